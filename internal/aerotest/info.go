package aerotest

import (
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
)

// The info protocol is text: the request names commands one per line; the response repeats
// each name, a tab, and its value, one per line.

const (
	buildVersion = "8.1.0.0"
	// features must include "pscans": the client refuses nodes without it (servers < 4.9).
	features = "batch-any;batch-index;blob-bits;cdt-list;cdt-map;cluster-stable;float;geo;" +
		"peers;pipelining;pquery;pscans;query-show;relaxed-sc;replicas;replicas-all;" +
		"replicas-master;replicas-max;truncate-namespace;udf"
	// The cluster never changes, so its generations never do.
	partitionGeneration = 1
	peersGeneration     = 1
	partitionCount      = 4096
)

// allPartitions is the base64 bitmap of a replica that owns all 4096 partitions.
var allPartitions = base64.StdEncoding.EncodeToString(bytesOf(0xFF, partitionCount/8))

func bytesOf(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

// handleInfo answers an info request with one line per command asked.
func (s *Server) handleInfo(body []byte) []byte {
	var out strings.Builder
	for _, name := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		out.WriteString(name)
		out.WriteByte('\t')
		out.WriteString(s.infoValue(name))
		out.WriteByte('\n')
	}
	return append(protoHeader(protoInfo, out.Len()), out.String()...)
}

// infoValue answers one info command. These are the ones the client sends while seeding and
// tending (node, build, features, partition-generation, peers-generation, peers-*, service-*,
// replicas*, cluster-name, rack-ids) plus a few that help operators and tests.
func (s *Server) infoValue(name string) string {
	switch name {
	case "node":
		return s.nodeName
	case "build":
		return buildVersion
	case "version":
		return "Aerospike Community Edition build " + buildVersion
	case "edition":
		return "Aerospike Community Edition"
	case "status":
		return "ok"
	case "features":
		return features
	case "partition-generation":
		return fmt.Sprint(partitionGeneration)
	case "peers-generation":
		return fmt.Sprint(peersGeneration)
	case "peers-clear-std", "peers-clear-alt", "peers-tls-std", "peers-tls-alt":
		// generation, default port, and no peers: a one-node cluster.
		return fmt.Sprintf("%d,%d,[]", peersGeneration, s.port())
	case "service-clear-std", "service-clear-alt", "service":
		return s.Addr()
	case "service-tls-std", "service-tls-alt":
		return ""
	case "cluster-name":
		if s.cfg.ClusterName == "" {
			return "null"
		}
		return s.cfg.ClusterName
	case "namespaces":
		return strings.Join(s.namespaceNames(), ";")
	case "replicas", "replicas-all", "replicas-master":
		return s.replicas(name)
	case "rack-ids":
		return s.perNamespace(func(string) string { return "0" }, ":")
	case "statistics":
		return "cluster_size=1;cluster_integrity=true;uptime=1"
	}
	if ns, ok := strings.CutPrefix(name, "namespace/"); ok {
		return s.namespaceInfo(ns)
	}
	return "ERROR::unrecognized command"
}

func (s *Server) namespaceNames() []string {
	names := make([]string, 0, len(s.store.namespaces))
	for name := range s.store.namespaces {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// replicas describes the partition map: every namespace, regime 0, replication factor 1, and
// this node owning every partition. "replicas" carries the regime; the older forms do not.
func (s *Server) replicas(command string) string {
	return s.perNamespace(func(string) string {
		switch command {
		case "replicas":
			return "0,1," + allPartitions
		case "replicas-all":
			return "1," + allPartitions
		}
		return allPartitions
	}, ":")
}

func (s *Server) perNamespace(value func(ns string) string, sep string) string {
	var parts []string
	for _, name := range s.namespaceNames() {
		parts = append(parts, name+sep+value(name))
	}
	return strings.Join(parts, ";")
}

// namespaceInfo answers "namespace/<name>" with the settings this server honours.
func (s *Server) namespaceInfo(name string) string {
	ns := s.store.namespaces[name]
	if ns == nil {
		return "ERROR::namespace not found"
	}
	return fmt.Sprintf("objects=%d;replication-factor=1;nsup-period=%d;default-ttl=%d;max-record-size=%d;storage-engine=memory",
		s.Len(name), int(ns.cfg.NsupPeriod.Seconds()), int(ns.cfg.DefaultTTL.Seconds()), ns.cfg.MaxRecordSize)
}
