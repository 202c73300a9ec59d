// Package aerotest is an in-process test server that speaks enough of Aerospike's wire protocol
// for the real Go client (github.com/aerospike/aerospike-client-go/v7) to use it unchanged, the
// way miniredis stands in for Redis. It presents itself as a one-node cluster that owns all 4096
// partitions of every configured namespace, keeps records in memory, and answers single-record
// reads, writes, deletes, touches and simple operates with the result codes a real Aerospike 8
// server gives. README.md lists what it covers and what it does not.
//
// A Server listens on 127.0.0.1 only. Stop and Restart simulate the server going away and coming
// back on the same port with its data kept (as a restart of a server with persistent storage
// would); Close ends it for good and drops the data.
package aerotest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Config configures a Server.
type Config struct {
	// Addr is the listen address. Its host must be 127.0.0.1 (or empty, meaning 127.0.0.1);
	// port 0 picks a free port. Default "127.0.0.1:0".
	Addr string
	// Namespaces are the namespaces the server has. At least one is required.
	Namespaces map[string]NamespaceConfig
	// ClusterName is what the "cluster-name" info command answers. Empty answers "null", as a
	// real server without a configured cluster name does.
	ClusterName string
	// NodeName is the node ID the server reports. Default: derived from the port, so that a
	// restarted server on the same port is the same node to the client.
	NodeName string
	// Logf, when set, receives one line per protocol error and connection problem.
	Logf func(format string, args ...any)
}

// NamespaceConfig configures one namespace, with the same meaning as in aerospike.conf.
type NamespaceConfig struct {
	// NsupPeriod is how often expired records are removed. Zero means never, and then (as in
	// real Aerospike 8 without allow-ttl-without-nsup) a write that sets a TTL is refused
	// with FAIL_FORBIDDEN (22).
	NsupPeriod time.Duration
	// DefaultTTL is the TTL of a write that asks for the namespace default (TTL 0 on the
	// wire). Zero means records never expire.
	DefaultTTL time.Duration
	// MaxRecordSize bounds a record's stored size (bin names and values); a larger write
	// fails with RECORD_TOO_BIG (13). Default 1 MiB.
	MaxRecordSize int
}

// maxMessageSize bounds one request so that a corrupt length cannot exhaust memory.
const maxMessageSize = 128 << 20

// Server is a running (or stopped) test server.
type Server struct {
	cfg      Config
	nodeName string
	store    *store

	mu      sync.Mutex
	addr    string // fixed by the first listen, reused by Restart
	ln      net.Listener
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup // connection and accept goroutines
	closed  bool
	nsupEnd chan struct{}
	nsupWG  sync.WaitGroup
}

// Start starts a server as cfg says and returns once it accepts connections.
func Start(cfg Config) (*Server, error) {
	if len(cfg.Namespaces) == 0 {
		return nil, errors.New("aerotest: Config.Namespaces must name at least one namespace")
	}
	for name := range cfg.Namespaces {
		if name == "" || len(name) >= 32 {
			return nil, fmt.Errorf("aerotest: namespace name %q must be 1 to 31 bytes", name)
		}
	}
	addr, err := loopbackAddr(cfg.Addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		store:   newStore(cfg.Namespaces),
		conns:   map[net.Conn]struct{}{},
		addr:    addr,
		nsupEnd: make(chan struct{}),
	}
	ln, err := s.listen()
	if err != nil {
		return nil, err
	}
	// Named before the first connection is accepted; derived from the port so that a
	// restarted server is the same node to the client.
	s.nodeName = cfg.NodeName
	if s.nodeName == "" {
		s.nodeName = "BB9" + strconv.FormatUint(uint64(s.port()), 16) + "7F000001"
	}
	s.serveListener(ln)
	s.startNsup()
	return s, nil
}

// loopbackAddr checks that addr listens on 127.0.0.1 only and fills in defaults.
func loopbackAddr(addr string) (string, error) {
	if addr == "" {
		return "127.0.0.1:0", nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("aerotest: bad Addr %q: %w", addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if host != "127.0.0.1" {
		return "", fmt.Errorf("aerotest: Addr %q: the test server listens on 127.0.0.1 only", addr)
	}
	return net.JoinHostPort(host, port), nil
}

// Addr is the host:port the server listens on (also while stopped).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Host is the address's host, always 127.0.0.1; with Port, for clients that take them apart.
func (s *Server) Host() string { return "127.0.0.1" }

// Port is the TCP port the server listens on (also while stopped).
func (s *Server) Port() int { return s.port() }

func (s *Server) port() int {
	_, p, _ := net.SplitHostPort(s.Addr())
	n, _ := strconv.Atoi(p)
	return n
}

// Stop closes the listener and every client connection, as a crashed or stopped server would,
// but keeps the data. Restart brings the server back on the same address.
func (s *Server) Stop() {
	s.mu.Lock()
	if s.ln != nil {
		_ = s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Restart listens again on the address of the first Start, with the data the server had when
// it was stopped. Restarting a running server is a no-op.
func (s *Server) Restart() error {
	s.mu.Lock()
	running, closed := s.ln != nil, s.closed
	s.mu.Unlock()
	if closed {
		return errors.New("aerotest: Restart after Close")
	}
	if running {
		return nil
	}
	ln, err := s.listen()
	if err != nil {
		return err
	}
	s.serveListener(ln)
	return nil
}

// ColdRestart stops the server and starts it again as Aerospike Community Edition does after a
// cold start (a restart that rebuilds its index from the storage device): records deleted
// since they were written come back unless they have expired, because CE's deletes are not
// durable. A record overwritten after its delete keeps its newest version.
func (s *Server) ColdRestart() error {
	s.Stop()
	s.store.coldStart(time.Now())
	return s.Restart()
}

// Close stops the server for good and drops its data.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.nsupEnd)
	s.mu.Unlock()
	s.Stop()
	s.nsupWG.Wait()
	s.store.clear()
}

// Len reports how many live (not expired) records a namespace holds, for tests.
func (s *Server) Len(namespace string) int {
	return s.store.len(namespace, time.Now())
}

// listen opens the listener on s.addr and fixes the port the first time.
func (s *Server) listen() (net.Listener, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ln, err := net.Listen("tcp4", s.addr)
	if err != nil {
		return nil, fmt.Errorf("aerotest: listening on %s: %w", s.addr, err)
	}
	s.ln = ln
	s.addr = ln.Addr().String()
	return ln, nil
}

func (s *Server) serveListener(ln net.Listener) {
	s.wg.Add(1)
	go s.accept(ln)
}

func (s *Server) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return // listener closed by Stop
		}
		s.mu.Lock()
		if s.ln != ln { // stopped between Accept and here
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf(format, args...)
	}
}

// serve answers one connection's requests in order until it closes or sends garbage.
func (s *Server) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = c.Close()
	}()
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriterSize(c, 64<<10)
	for {
		typ, body, err := readProto(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.logf("aerotest: %s: %v", c.RemoteAddr(), err)
			}
			return
		}
		reply, err := s.handle(typ, body)
		if err != nil {
			s.logf("aerotest: %s: %v", c.RemoteAddr(), err)
			return
		}
		if _, err := w.Write(reply); err != nil {
			return
		}
		if err := w.Flush(); err != nil {
			return
		}
	}
}

// handle answers one proto message: an info request or a (possibly compressed) AS_MSG.
func (s *Server) handle(typ byte, body []byte) ([]byte, error) {
	switch typ {
	case protoInfo:
		return s.handleInfo(body), nil
	case protoMessage:
		return s.handleMessage(body, time.Now())
	case protoCompressed:
		inner, err := decompress(body)
		if err != nil {
			return nil, err
		}
		return s.handleMessage(inner, time.Now())
	}
	return nil, fmt.Errorf("unsupported proto type %d (security/admin messages are not implemented)", typ)
}

// startNsup removes expired records every NsupPeriod, per namespace, like the real nsup thread.
func (s *Server) startNsup() {
	for name, cfg := range s.cfg.Namespaces {
		if cfg.NsupPeriod <= 0 {
			continue
		}
		s.nsupWG.Add(1)
		go func() {
			defer s.nsupWG.Done()
			t := time.NewTicker(cfg.NsupPeriod)
			defer t.Stop()
			for {
				select {
				case <-s.nsupEnd:
					return
				case now := <-t.C:
					s.store.reap(name, now)
				}
			}
		}()
	}
}
