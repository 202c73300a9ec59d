package dnstest

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
)

// The resolver gets what the server holds, over real packets: long TXT records joined, MX and
// addresses, NXDOMAIN for unknown names and NODATA for known ones without that type.
func TestServerAnswersTheGoResolver(t *testing.T) {
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	long := strings.Repeat("k", 600)
	s.TXT("Example.org", "v=spf1 -all")
	s.TXT("sel._domainkey.example.org", "v=DKIM1; p="+long)
	s.MX("example.org", 10, "mx.example.org")
	s.A("mx.example.org", "127.0.0.1", "::1")
	r := s.Resolver()
	ctx := context.Background()

	txt, err := r.LookupTXT(ctx, "example.org")
	if err != nil || len(txt) != 1 || txt[0] != "v=spf1 -all" {
		t.Fatalf("TXT example.org: %q, %v", txt, err)
	}
	txt, err = r.LookupTXT(ctx, "sel._domainkey.example.org")
	if err != nil || len(txt) != 1 || txt[0] != "v=DKIM1; p="+long {
		t.Fatalf("long TXT: %d records, %v", len(txt), err)
	}
	mx, err := r.LookupMX(ctx, "example.org")
	if err != nil || len(mx) != 1 || mx[0].Host != "mx.example.org." || mx[0].Pref != 10 {
		t.Fatalf("MX: %v, %v", mx, err)
	}
	ips, err := r.LookupIPAddr(ctx, "mx.example.org")
	if err != nil || len(ips) != 2 {
		t.Fatalf("addresses: %v, %v", ips, err)
	}
	var dnsErr *net.DNSError
	if _, err := r.LookupTXT(ctx, "nowhere.example.org"); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Fatalf("unknown name: %v, want not found", err)
	}
	if _, err := r.LookupMX(ctx, "mx.example.org"); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Fatalf("no MX at a known name: %v, want not found (NODATA)", err)
	}
	if s.Queries() == 0 {
		t.Fatal("no query reached the server")
	}
}
