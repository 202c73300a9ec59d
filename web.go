package main

import "embed"

// webFiles is the static web client, served at / unless -web-dir names a directory.
//
//go:embed web
var webFiles embed.FS
