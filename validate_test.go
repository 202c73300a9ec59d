package main

import "testing"

func TestNormalEmail(t *testing.T) {
	cases := []struct{ in, want string }{
		{"  Kate@Example.ORG ", "kate@example.org"},
		{"\u212Aate@example.org", "\u212Aate@example.org"}, // KELVIN SIGN is not "k"
		{"ünï@Bücher.Example", "ünï@xn--bcher-kva.example"},
		{"a@xn--bcher-kva.example", "a@xn--bcher-kva.example"},
		{"", ""},
	}
	for _, c := range cases {
		got, err := normalEmail(c.in)
		if err != nil || got != c.want {
			t.Errorf("normalEmail(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"not an address", "a@", "Name <a@example.org>", "a@exa mple.org"} {
		if _, err := normalEmail(bad); err == nil {
			t.Errorf("normalEmail(%q) accepted", bad)
		}
	}
}
