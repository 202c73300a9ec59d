// Package dnstest is a small authoritative DNS server for tests, on 127.0.0.1 over UDP and TCP
// (github.com/miekg/dns), with a net.Resolver that asks only it. The program under test does
// its real look-ups — Go's own resolver, real packets — and the test decides what the world's
// DNS says: A, AAAA, MX and TXT records by name. A name with no records answers NXDOMAIN; a
// name with records of other types answers NOERROR with none (NODATA), as real servers do.
package dnstest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Server answers from the records it was given.
type Server struct {
	udp, tcp *dns.Server
	udpAddr  string
	tcpAddr  string

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case FQDN
	queries int
}

// Start serves on free loopback ports until Close.
func Start() (*Server, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pc.Close()
		return nil, err
	}
	s := &Server{records: map[string][]dns.RR{}, udpAddr: pc.LocalAddr().String(), tcpAddr: ln.Addr().String()}
	s.udp = &dns.Server{PacketConn: pc, Handler: s}
	s.tcp = &dns.Server{Listener: ln, Handler: s}
	started := make(chan struct{}, 2)
	s.udp.NotifyStartedFunc = func() { started <- struct{}{} }
	s.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go func() { _ = s.udp.ActivateAndServe() }()
	go func() { _ = s.tcp.ActivateAndServe() }()
	for range 2 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			s.Close()
			return nil, fmt.Errorf("dnstest: the server did not start")
		}
	}
	return s, nil
}

// Close stops both listeners.
func (s *Server) Close() {
	_ = s.udp.Shutdown()
	_ = s.tcp.Shutdown()
}

// Resolver is a pure-Go resolver that sends every query to this server.
func (s *Server) Resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		if strings.HasPrefix(network, "tcp") {
			return d.DialContext(ctx, "tcp", s.tcpAddr)
		}
		return d.DialContext(ctx, "udp", s.udpAddr)
	}}
}

// Queries counts the questions answered so far.
func (s *Server) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

func fqdn(name string) string { return dns.Fqdn(strings.ToLower(name)) }

func (s *Server) add(rr dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := fqdn(rr.Header().Name)
	s.records[name] = append(s.records[name], rr)
}

func hdr(name string, typ uint16) dns.RR_Header {
	return dns.RR_Header{Name: fqdn(name), Rrtype: typ, Class: dns.ClassINET, Ttl: 60}
}

// A adds address records (A or AAAA by the address's family).
func (s *Server) A(name string, addrs ...string) {
	for _, a := range addrs {
		ip := net.ParseIP(a)
		if ip.To4() != nil {
			s.add(&dns.A{Hdr: hdr(name, dns.TypeA), A: ip.To4()})
		} else {
			s.add(&dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: ip})
		}
	}
}

// MX adds a mail exchanger.
func (s *Server) MX(name string, pref uint16, host string) {
	s.add(&dns.MX{Hdr: hdr(name, dns.TypeMX), Preference: pref, Mx: fqdn(host)})
}

// TXT adds one TXT record holding text, split into character-strings of at most 255 bytes as
// a zone file would hold a long one (a resolver joins them again).
func (s *Server) TXT(name, text string) {
	var parts []string
	for len(text) > 255 {
		parts, text = append(parts, text[:255]), text[255:]
	}
	s.add(&dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: append(parts, text)})
}

// Remove drops every record of name.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.records, fqdn(name))
}

// ServeDNS answers one query from the records.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	s.mu.Lock()
	s.queries++
	for _, q := range req.Question {
		rrs, known := s.records[fqdn(q.Name)]
		if !known {
			m.Rcode = dns.RcodeNameError
			continue
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
	}
	s.mu.Unlock()
	_ = w.WriteMsg(m)
}
