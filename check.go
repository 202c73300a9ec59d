package main

import (
	"context"
	"crypto/ecdh"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go"
)

// `pingedchat check [-env-file FILE] [server flags]` reads the configuration exactly as the
// server does (flags, PINGED_* variables, -NAME-file secrets; an env file if named) and tries
// every dependency the way the server would use it — without starting a server, migrating a
// database or sending mail — and, for mail, looks up the mail domain's DNS and prints the exact
// records to add. Each line is ok, "--" (not configured), warn (works, but should be fixed) or
// FAIL (the server would not start, or a configured feature would not work); the exit status
// is 1 when any line is FAIL. Run it before the first start and after every change.

type checkStatus int

const (
	checkOK checkStatus = iota
	checkSkip
	checkWarn
	checkFail
)

func (s checkStatus) String() string { return [...]string{"ok", "--", "warn", "FAIL"}[s] }

// checkItem is one line of the report.
type checkItem struct {
	status       checkStatus
	what, detail string
}

const (
	checkTimeout = 10 * time.Second // each dependency's check
	probeTimeout = 5 * time.Second  // one reachability probe of the public name
	zoneTTL      = "3600"
)

// checker runs the checks of one configuration and collects what they found.
type checker struct {
	cfg      Config
	resolver mailResolver
	// localAddrs lists this host's addresses (a test pretends to be elsewhere).
	localAddrs func() ([]net.IP, error)
	timeout    time.Duration
	probe      time.Duration

	items   []checkItem
	records []string // zone-file lines to add
	notes   []string // what to do that is not a DNS record
}

func newChecker(cfg Config) *checker {
	c := &checker{cfg: cfg, resolver: cfg.mailDNS, localAddrs: interfaceIPs, timeout: checkTimeout, probe: probeTimeout}
	if c.resolver == nil {
		c.resolver = net.DefaultResolver
	}
	return c
}

func (c *checker) add(st checkStatus, what, format string, args ...any) {
	c.items = append(c.items, checkItem{st, what, fmt.Sprintf(format, args...)})
}

// zoneLine is a DNS record as a zone file writes it.
func zoneLine(name, typ, value string) string {
	return strings.TrimSuffix(name, ".") + ".\t" + zoneTTL + "\tIN\t" + typ + "\t" + value
}

// record asks for a DNS record.
func (c *checker) record(name, typ, value string) {
	line := zoneLine(name, typ, value)
	if !slices.Contains(c.records, line) {
		c.records = append(c.records, line)
	}
}

func (c *checker) note(format string, args ...any) {
	c.notes = append(c.notes, fmt.Sprintf(format, args...))
}

// run checks every dependency in turn, each within its own timeout.
func (c *checker) run(ctx context.Context) {
	for _, check := range []func(context.Context){
		c.checkPostgres, c.checkQuickStore, c.checkNATS, c.checkFiles, c.checkTLS,
		c.checkRelay, c.checkDKIM, c.checkMailDNS, c.checkPush,
	} {
		cctx, cancel := context.WithTimeout(ctx, c.timeout)
		check(cctx)
		cancel()
	}
}

// failures counts the FAIL lines.
func (c *checker) failures() int {
	n := 0
	for _, it := range c.items {
		if it.status == checkFail {
			n++
		}
	}
	return n
}

// write prints the report: one aligned line per check, then the DNS records to add and the
// other things to do.
func (c *checker) write(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, it := range c.items {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", it.status, it.what, it.detail)
	}
	tw.Flush()
	if len(c.records) > 0 {
		fmt.Fprintf(w, "\nDNS records to add (zone file lines; in a provider's web form, the name, type and the text between the quotes):\n")
		for _, r := range c.records {
			fmt.Fprintln(w, "  "+r)
		}
	}
	if len(c.notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range c.notes {
			fmt.Fprintln(w, "* "+n)
		}
	}
	warns := 0
	for _, it := range c.items {
		if it.status == checkWarn {
			warns++
		}
	}
	fmt.Fprintf(w, "\n%d to fix (FAIL), %d warnings.\n", c.failures(), warns)
}

// runCheck is the subcommand: the configuration from args (and the env file), the report on
// out, and an error when something needed is wrong.
func runCheck(ctx context.Context, args []string, out io.Writer) error {
	envFile, args, err := envFileArg(args)
	if err != nil {
		return err
	}
	if envFile != "" {
		if _, err := loadEnvFile(envFile); err != nil {
			return err
		}
	}
	cfg, err := parseFlags(args)
	if err != nil {
		return fmt.Errorf("the configuration: %w", err)
	}
	return checkConfig(ctx, cfg, out)
}

func checkConfig(ctx context.Context, cfg Config, out io.Writer) error {
	c := newChecker(cfg)
	fmt.Fprintf(out, "%s\n\n", versionString())
	c.run(ctx)
	c.write(out)
	if n := c.failures(); n > 0 {
		return fmt.Errorf("check: %d problem(s) to fix", n)
	}
	return nil
}

// ---- PostgreSQL ---------------------------------------------------------------------------

func (c *checker) checkPostgres(ctx context.Context) {
	pcfg, err := pgx.ParseConfig(c.cfg.Postgres)
	if err != nil {
		c.add(checkFail, "postgres", "parsing -postgres: %v", err)
		return
	}
	where := fmt.Sprintf("%s@%s/%s", pcfg.User, pcfg.Host, pcfg.Database)
	conn, err := pgx.ConnectConfig(ctx, pcfg)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "3D000" { // invalid_catalog_name
		c.checkCreateDatabase(ctx, pcfg, where)
		return
	}
	if err != nil {
		c.add(checkFail, "postgres", "connecting to %s: %v; is PostgreSQL running there, and does the role exist?", where, err)
		return
	}
	defer conn.Close(context.Background())
	var version string
	var canCreate, hasSchema bool
	err = conn.QueryRow(ctx, `SELECT current_setting('server_version'), current_schema() IS NOT NULL,
		current_schema() IS NOT NULL AND has_schema_privilege(current_schema(), 'CREATE')`).Scan(&version, &hasSchema, &canCreate)
	if err != nil {
		c.add(checkFail, "postgres", "querying %s: %v", where, err)
		return
	}
	if !canCreate {
		c.add(checkFail, "postgres", "role %s may not create tables in %s (the server creates one per conversation): as the database's owner, GRANT CREATE ON SCHEMA public TO %s",
			pcfg.User, where, pcfg.User)
		return
	}
	schema, err := schemaVersionOn(ctx, conn)
	if err != nil {
		c.add(checkFail, "postgres", "reading the schema version of %s: %v", where, err)
		return
	}
	switch ours := schemaVersion(); {
	case schema > ours:
		c.add(checkFail, "postgres", "%s was migrated by a newer release (schema %d, this binary knows %d): run that release", where, schema, ours)
	case schema == 0:
		c.add(checkOK, "postgres", "PostgreSQL %s at %s, empty: the schema is created at the first start", version, where)
	case schema == ours:
		c.add(checkOK, "postgres", "PostgreSQL %s at %s, schema %d (current)", version, where, schema)
	default:
		c.add(checkOK, "postgres", "PostgreSQL %s at %s, schema %d: %d migration(s) to apply at start", version, where, schema, ours-schema)
	}
}

// schemaVersionOn is the database's schema version, 0 before the first start.
func schemaVersionOn(ctx context.Context, conn *pgx.Conn) (int, error) {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('schema_version') IS NOT NULL").Scan(&exists); err != nil || !exists {
		return 0, err
	}
	var v int
	err := conn.QueryRow(ctx, "SELECT COALESCE(max(version), 0) FROM schema_version").Scan(&v)
	return v, err
}

// checkCreateDatabase: the database is missing, which is fine when the role may create it (the
// server does at its first start).
func (c *checker) checkCreateDatabase(ctx context.Context, pcfg *pgx.ConnConfig, where string) {
	admin := pcfg.Copy()
	admin.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, admin)
	if err != nil {
		c.add(checkFail, "postgres", "database %s does not exist, and connecting to the maintenance database postgres failed: %v", where, err)
		return
	}
	defer conn.Close(context.Background())
	var may bool
	if err := conn.QueryRow(ctx, "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&may); err != nil {
		c.add(checkFail, "postgres", "database %s does not exist; reading the role's rights: %v", where, err)
		return
	}
	if !may {
		c.add(checkFail, "postgres", "database %s does not exist and role %s may not create it: as postgres, CREATE DATABASE %s OWNER %s",
			where, pcfg.User, pgx.Identifier{pcfg.Database}.Sanitize(), pgx.Identifier{pcfg.User}.Sanitize())
		return
	}
	c.add(checkOK, "postgres", "database %s does not exist yet: the server creates it at its first start", where)
}

// ---- Quick store and NATS -----------------------------------------------------------------

func (c *checker) checkQuickStore(ctx context.Context) {
	spec := c.cfg.QuickStore
	switch {
	case spec == "" || spec == "postgres":
		c.add(checkOK, "quick store", "postgres: a table in the database above")
	case strings.HasPrefix(spec, "aerospike://"):
		q, err := openAerospikeQuickStore(ctx, spec)
		if err != nil {
			c.add(checkFail, "quick store", "%v", err)
			return
		}
		defer q.Close()
		if _, err := q.Get(ctx, Key{nsUsers, "health", "probe"}); err != nil && !isNotFound(err) {
			c.add(checkFail, "quick store", "reading from Aerospike: %v", err)
			return
		}
		c.add(checkOK, "quick store", "Aerospike at %s: connected, namespaces present, a read answered", strings.TrimPrefix(spec, "aerospike://"))
	default:
		c.add(checkFail, "quick store", "unknown -quickstore %q: use postgres or aerospike://host:3000", spec)
	}
}

func (c *checker) checkNATS(ctx context.Context) {
	if c.cfg.NATS == "" {
		c.add(checkOK, "nats", "embedded (enough for one instance; several instances share a NATS server: -nats)")
		return
	}
	timeout := c.timeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	nc, err := nats.Connect(c.cfg.NATS, nats.Name("pingedchat check"), nats.Timeout(timeout), nats.NoReconnect())
	if err != nil {
		c.add(checkFail, "nats", "connecting to %s: %v", redactURL(c.cfg.NATS), err)
		return
	}
	defer nc.Close()
	if err := nc.FlushWithContext(ctx); err != nil {
		c.add(checkFail, "nats", "a round trip to %s: %v", redactURL(c.cfg.NATS), err)
		return
	}
	c.add(checkOK, "nats", "connected to %s (NATS %s)", nc.ConnectedUrlRedacted(), nc.ConnectedServerVersion())
}

// ---- Files ------------------------------------------------------------------------------------

func (c *checker) checkFiles(ctx context.Context) {
	if detail, err := writableDir(c.cfg.FilesDir); err != nil {
		c.add(checkFail, "files", "-files-dir %s: %v", c.cfg.FilesDir, err)
	} else {
		c.add(checkOK, "files", "-files-dir %s %s", c.cfg.FilesDir, detail)
	}
	if notConfigured(c.cfg.S3URL) {
		c.add(checkSkip, "s3", "not configured: uploads are kept in -files-dir")
		return
	}
	c.checkS3(ctx)
}

// writableDir proves dir writable by making and removing a file in it, or, when it does not
// exist yet, in the nearest directory above it that does (the server creates the rest).
func writableDir(dir string) (string, error) {
	probe, detail := dir, "is writable"
	for {
		st, err := os.Stat(probe)
		if err == nil {
			if !st.IsDir() {
				return "", fmt.Errorf("%s is not a directory", probe)
			}
			break
		}
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return "", err
		}
		parent := filepath.Dir(probe)
		if parent == probe {
			return "", err
		}
		probe, detail = parent, "does not exist yet; the server creates it in "+parent+", which is writable"
	}
	f, err := os.CreateTemp(probe, ".pingedchat-check-*")
	if err != nil {
		return "", fmt.Errorf("cannot write there: %w", err)
	}
	_, werr := f.WriteString("pingedchat check\n")
	err = errors.Join(werr, f.Close(), os.Remove(f.Name()))
	if err != nil {
		return "", fmt.Errorf("cannot write there: %w", err)
	}
	return detail, nil
}

func (c *checker) checkS3(ctx context.Context) {
	s3, err := newS3Store(c.cfg)
	if err != nil {
		c.add(checkFail, "s3", "%v", err)
		return
	}
	where := s3.client.EndpointURL().Host + "/" + s3.bucket
	ok, err := s3.client.BucketExists(ctx, s3.bucket)
	if err != nil {
		c.add(checkFail, "s3", "asking %s whether the bucket exists: %v", where, err)
		return
	}
	if !ok {
		c.add(checkFail, "s3", "bucket %s does not exist: create it, or fix -s3-url", where)
		return
	}
	key := "pingedchat-check/" + randomToken()
	if _, err := s3.client.PutObject(ctx, s3.bucket, key, strings.NewReader("pingedchat check\n"), 17,
		minio.PutObjectOptions{ContentType: "text/plain"}); err != nil {
		c.add(checkFail, "s3", "writing to %s: %v (check -s3-access-key, -s3-secret-key and the key's rights)", where, err)
		return
	}
	if err := s3.client.RemoveObject(ctx, s3.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		c.add(checkWarn, "s3", "%s: writable, but deleting %s failed (the server deletes files): %v", where, key, err)
		return
	}
	c.add(checkOK, "s3", "bucket %s: writable", where)
}

// ---- Push ---------------------------------------------------------------------------------------

func (c *checker) checkPush(context.Context) {
	pc := c.cfg.PushConfig
	configured := false
	if !notConfigured(pc.FCMCredentials) {
		configured = true
		if project, err := checkFCMCredentials(pc); err != nil {
			c.add(checkFail, "push fcm", "%v", err)
		} else {
			c.add(checkOK, "push fcm", "service account of project %s parses (the token exchange is not tried)", project)
		}
	}
	if !notConfigured(pc.APNsKeyFile) {
		configured = true
		if _, err := newAPNs(pc); err != nil {
			c.add(checkFail, "push apns", "%v", err)
		} else {
			c.add(checkOK, "push apns", "key %s of team %s for %s parses", pc.APNsKeyID, pc.APNsTeamID, pc.APNsTopic)
		}
	}
	if !notConfigured(pc.VAPIDPublicKey) || !notConfigured(pc.VAPIDPrivateKey) {
		configured = true
		if err := checkVAPID(c.cfg); err != nil {
			c.add(checkFail, "push webpush", "%v", err)
		} else {
			c.add(checkOK, "push webpush", "VAPID keys are a P-256 pair")
		}
	}
	if !configured {
		c.add(checkSkip, "push", "no provider configured (-fcm-credentials, -apns-key-file, -vapid-public-key)")
	}
}

// checkFCMCredentials parses the service-account file as the server does, and its private key,
// which the server reads only at the first push.
func checkFCMCredentials(pc PushConfig) (string, error) {
	if _, err := newFCM(pc); err != nil {
		return "", err
	}
	b, err := os.ReadFile(pc.FCMCredentials)
	if err != nil {
		return "", fmt.Errorf("reading -fcm-credentials: %w", err)
	}
	var sa struct {
		Type        string `json:"type"`
		ProjectID   string `json:"project_id"`
		ClientEmail string `json:"client_email"`
		PrivateKey  string `json:"private_key"`
	}
	if err := json.Unmarshal(b, &sa); err != nil {
		return "", fmt.Errorf("reading -fcm-credentials: %w", err)
	}
	if sa.Type != "service_account" || sa.ClientEmail == "" {
		return "", fmt.Errorf("-fcm-credentials: not a service-account key (type %q): download one under Firebase's Project settings, Service accounts", sa.Type)
	}
	block, _ := pem.Decode([]byte(sa.PrivateKey))
	if block == nil {
		return "", errors.New("-fcm-credentials: private_key holds no PEM key")
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		if _, err1 := x509.ParsePKCS1PrivateKey(block.Bytes); err1 != nil {
			return "", fmt.Errorf("-fcm-credentials: private_key: %w", err)
		}
	}
	return sa.ProjectID, nil
}

// checkVAPID parses the keys as the server does and checks that they belong together (the
// server would sign with one and announce the other, and every browser push would fail).
func checkVAPID(cfg Config) error {
	if _, err := newWebPush(cfg); err != nil {
		return err
	}
	priv, _ := decodeB64URL(cfg.VAPIDPrivateKey)
	pub, _ := decodeB64URL(cfg.VAPIDPublicKey)
	k, err := ecdh.P256().NewPrivateKey(priv)
	if err != nil {
		return fmt.Errorf("-vapid-private-key: %w", err)
	}
	if !slices.Equal(k.PublicKey().Bytes(), pub) {
		return errors.New("-vapid-public-key is not the public half of -vapid-private-key")
	}
	return nil
}

// ---- Helpers --------------------------------------------------------------------------------

// interfaceIPs are the addresses of this host's interfaces.
func interfaceIPs() ([]net.IP, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var ips []net.IP
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			ips = append(ips, n.IP)
		}
	}
	return ips, nil
}

// publicHost is the host name people reach the server at.
func (c *checker) publicHost() string {
	if u, err := url.Parse((&Database{cfg: c.cfg}).publicURL()); err == nil && u.Hostname() != "" {
		return strings.ToLower(u.Hostname())
	}
	return c.cfg.MailDomain
}

// isDNSNotFound: the name or the record type does not exist (NXDOMAIN, NODATA), as opposed to
// a look-up that failed.
func isDNSNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}
