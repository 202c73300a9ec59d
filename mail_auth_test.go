package main

import (
	"context"
	"net"
	"strings"
)

// fakeDNS is the DNS of inbound mail's checks in tests: TXT records by name; every other name
// and type does not exist. No look-up leaves the machine.
type fakeDNS map[string][]string

func notFound(name string) error { return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true} }

func (d fakeDNS) LookupTXT(_ context.Context, name string) ([]string, error) {
	if txt, ok := d[strings.ToLower(strings.TrimSuffix(name, "."))]; ok {
		return txt, nil
	}
	return nil, notFound(name)
}
func (d fakeDNS) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	return nil, notFound(name)
}
func (d fakeDNS) LookupIPAddr(_ context.Context, name string) ([]net.IPAddr, error) {
	return nil, notFound(name)
}
func (d fakeDNS) LookupAddr(_ context.Context, addr string) ([]string, error) {
	return nil, notFound(addr)
}
