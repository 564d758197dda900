package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/mac"
	"github.com/tink-crypto/tink-go/v2/signature"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/policy"
)

// newAuditor builds the auditor the policy's audit section describes,
// over sinks.
func newAuditor(a policy.Audit, log *slog.Logger, sinks []audit.Sink) (*audit.Auditor, error) {
	var signer audit.Signer
	if a.SigningKey != "" {
		var err error
		if signer, err = loadSigner(a.SigningKey); err != nil {
			return nil, err
		}
	}
	return audit.New(audit.Options{Log: log, FailClosed: *a.FailClosed, Sinks: sinks, Signer: signer,
		CheckpointEvery: a.CheckpointEvery, CheckpointInterval: a.CheckpointInterval, Instance: instanceName(a.Instance), Timeout: a.Timeout}), nil
}

// instanceName is the policy's audit.instance, else $POD_NAME, else the
// host name.
func instanceName(configured string) string {
	if configured != "" {
		return configured
	}
	if p := os.Getenv("POD_NAME"); p != "" {
		return p
	}
	h, _ := os.Hostname()
	return h
}

// loadSigner reads the audit signing keyset `audit keygen` wrote.
func loadSigner(path string) (audit.Signer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit.signing_key: %w", err)
	}
	h, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(bytes.NewReader(raw)))
	if err != nil {
		return nil, fmt.Errorf("audit.signing_key %s: not a Tink keyset: %w", path, err)
	}
	s, err := signature.NewSigner(h)
	if err != nil {
		return nil, fmt.Errorf("audit.signing_key %s: not a signing keyset (write one with phiguard audit keygen): %w", path, err)
	}
	return s, nil
}

// loadHasher reads the keyed-hash keyset `audit keygen` wrote (hash.json);
// nil for no path.
func loadHasher(path string) (*audit.Hasher, error) {
	if path == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit.hash_key: %w", err)
	}
	h, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(bytes.NewReader(raw)))
	if err != nil {
		return nil, fmt.Errorf("audit.hash_key %s: not a Tink keyset: %w", path, err)
	}
	m, err := mac.New(h)
	if err != nil {
		return nil, fmt.Errorf("audit.hash_key %s: not a MAC keyset (write one with phiguard audit keygen): %w", path, err)
	}
	return audit.NewHasher(m), nil
}

// loadVerifier reads the public keyset auditors verify with.
func loadVerifier(path string) (audit.SigVerifier, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	h, err := keyset.ReadWithNoSecrets(keyset.NewJSONReader(bytes.NewReader(raw)))
	if err != nil {
		return nil, fmt.Errorf("%s: not a public Tink keyset (the verify.json of phiguard audit keygen): %w", path, err)
	}
	v, err := signature.NewVerifier(h)
	if err != nil {
		return nil, fmt.Errorf("%s: not a signature verification keyset: %w", path, err)
	}
	return v, nil
}

const auditUsage = `Usage: phiguard audit SUBCOMMAND [flags]

The audit trail is a hash chain: every line carries its chain, its
sequence number and the hash of the line before; checkpoints sign the
chain head with an Ed25519 key (audit.signing_key), every
audit.checkpoint_every lines and every audit.checkpoint_interval, and a
final one when phiguard stops. Auditors verify with the public key alone.

Subcommands:
  keygen   write a signing keyset (-out DIR: signing.json, secret) and its
           public half (verify.json, for auditors)
  verify   check audit files (-pub verify.json FILE...): order, hashes and
           signatures, across rotated files and restarts
  hash     the keyed hash of a known value (-key hash.json VALUE...), as
           records show path parameters: find a patient's records
  query    the lines that match [-org] [-user] [-route] [-action] [-since]
           [-until] [-events], as a table, JSON lines or CSV (-format)
  tail     the last -n records, as a table
  export   a verified, filtered extract, signed as a chain of its own
           (-pub, -key, -out, the query flags)

phiguard audit SUBCOMMAND -h shows a subcommand's flags.
`

func cmdAudit(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return usageError{"audit needs a subcommand: keygen, verify"}
	}
	switch args[0] {
	case "keygen":
		return auditKeygen(args[1:], stdout, stderr)
	case "verify":
		return auditVerify(args[1:], stdout, stderr)
	case "hash":
		return auditHash(args[1:], stdout, stderr)
	case "query":
		return auditQuery(args[1:], stdout, stderr)
	case "tail":
		return auditTail(args[1:], stdout, stderr)
	case "export":
		return auditExport(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, auditUsage)
		return nil
	}
	fmt.Fprint(stderr, auditUsage)
	return usageError{fmt.Sprintf("unknown audit subcommand %q", args[0])}
}

func auditKeygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit keygen", "Writes DIR/signing.json (an Ed25519 Tink keyset, owner-readable only: point audit.signing_key at it, from a Secret), DIR/verify.json (its public half: give it to auditors) and DIR/hash.json (an HMAC-SHA256 keyset for audit.hash_key: path identifiers in records are hashed with it; investigators need it for phiguard audit hash). Refuses to overwrite.", stdout, stderr)
	out := fs.String("out", "", "the `DIR` to write to (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usageError{"audit keygen needs -out DIR"}
	}
	priv, pub, hashKey := filepath.Join(*out, "signing.json"), filepath.Join(*out, "verify.json"), filepath.Join(*out, "hash.json")
	for _, p := range []string{priv, pub, hashKey} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists: not overwritten", p)
		}
	}
	h, err := keyset.NewHandle(signature.ED25519KeyTemplate())
	if err != nil {
		return err
	}
	var sb, pb bytes.Buffer
	if err := insecurecleartextkeyset.Write(h, keyset.NewJSONWriter(&sb)); err != nil {
		return err
	}
	ph, err := h.Public()
	if err != nil {
		return err
	}
	if err := ph.WriteWithNoSecrets(keyset.NewJSONWriter(&pb)); err != nil {
		return err
	}
	mh, err := keyset.NewHandle(mac.HMACSHA256Tag256KeyTemplate())
	if err != nil {
		return err
	}
	var hb bytes.Buffer
	if err := insecurecleartextkeyset.Write(mh, keyset.NewJSONWriter(&hb)); err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return err
	}
	if err := writeNew(hashKey, hb.Bytes(), 0o600); err != nil {
		return err
	}
	if err := writeNew(priv, sb.Bytes(), 0o600); err != nil {
		return err
	}
	if err := writeNew(pub, pb.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (secret: audit.signing_key), %s (public: for auditors) and %s (secret: audit.hash_key)\n", priv, pub, hashKey)
	return nil
}

// writeNew creates path with data, failing if it exists.
func writeNew(path string, data []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func auditVerify(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit verify", `Checks audit files: every line in its chain's order, linked by hash to the one before, every checkpoint's signature valid. Rotated files may be given in any order. Prints ok with counts, or the first line that was altered, inserted, deleted or reordered (exit 1). Lines after a chain's last checkpoint are reported unverified, not accepted.`, stdout, stderr)
	pub := fs.String("pub", "", "the public keyset `FILE` (verify.json from audit keygen) (required)")
	closed := fs.Bool("closed", false, "every chain must end with its final checkpoint (archived logs: a missing tail is a problem)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	files, err := parseWithFiles(fs, args, "audit verify")
	if err != nil {
		return err
	}
	if *pub == "" {
		return usageError{"audit verify needs -pub FILE and at least one audit file"}
	}
	v, err := loadVerifier(*pub)
	if err != nil {
		return err
	}
	var in []audit.Input
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		in = append(in, audit.Input{Name: name, R: f})
	}
	rep, err := audit.Verify(in, v, audit.VerifyOptions{RequireClosed: *closed})
	if err != nil {
		return err
	}
	if rep.OK() && len(rep.Chains) == 0 {
		return errors.New("no audit chain in the files")
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		printReport(stdout, rep)
	}
	if !rep.OK() {
		return errReported
	}
	return nil
}

func printReport(w io.Writer, rep *audit.Report) {
	if rep.OK() {
		fmt.Fprintf(w, "ok: %d files, %d lines, %d chains\n", rep.Files, rep.Lines, len(rep.Chains))
	} else {
		fmt.Fprintf(w, "FAILED: %s\n", rep.Problem)
	}
	for _, c := range rep.Chains {
		state := "closed"
		if !c.Closed {
			state = "open"
		}
		var b strings.Builder
		fmt.Fprintf(&b, "  chain %s", c.ID)
		if c.Instance != "" {
			fmt.Fprintf(&b, " (%s)", c.Instance)
		}
		fmt.Fprintf(&b, ": %d lines (%d records) from %s to %s, %d checkpoints, %d verified, %s",
			c.Lines, c.Records, c.Start.Format("2006-01-02T15:04:05Z"), c.End.Format("2006-01-02T15:04:05Z"), c.Checkpoints, c.Verified, state)
		if c.Unverified > 0 {
			fmt.Fprintf(&b, "; %d lines after the last checkpoint unverified", c.Unverified)
		}
		fmt.Fprintln(w, b.String())
	}
}

func auditHash(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit hash", "Prints the keyed hash of each VALUE as audit records show it (a path parameter such as a phone number or an MRN, or a whole path no route took), so an investigator can find the records of a known value. Needs the deployment's hash key.", stdout, stderr)
	key := fs.String("key", "", "the hash keyset `FILE` (hash.json from audit keygen; audit.hash_key) (required)")
	if slices.ContainsFunc(args, isHelp) {
		fs.SetOutput(fs.stdout)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelpShown
		}
		return usageError{err.Error()}
	}
	if *key == "" || fs.NArg() == 0 {
		return usageError{"audit hash needs -key FILE and at least one VALUE"}
	}
	h, err := loadHasher(*key)
	if err != nil {
		return err
	}
	for _, v := range fs.Args() {
		fmt.Fprintln(stdout, h.Hash(v))
	}
	return nil
}

// auditFilterFlags adds the selection flags of query and export.
func auditFilterFlags(fs *flags) func() (audit.Filter, error) {
	org := fs.String("org", "", "only this organization's lines")
	user := fs.String("user", "", "only this user's lines")
	route := fs.String("route", "", "only this route's lines")
	action := fs.String("action", "", "only lines with this action (encrypt, decrypt, mask, deny, break_glass, high_risk_scope…) or event (session_revoke…)")
	since := fs.String("since", "", "only lines at or after this `TIME` (RFC 3339)")
	until := fs.String("until", "", "only lines before this `TIME` (RFC 3339)")
	events := fs.Bool("events", false, "events too (start, stop, reloads, revocations, key changes), not only requests' records")
	return func() (audit.Filter, error) {
		// An action no record takes names an event.
		recordAction := slices.Contains([]string{audit.ActionEncrypt, audit.ActionDecrypt, audit.ActionMask, audit.ActionIndex,
			audit.ActionSearch, audit.ActionDeny, audit.ActionBreakGlass, audit.ActionHighRisk}, *action)
		f := audit.Filter{Org: *org, User: *user, Route: *route, Action: *action, Events: *events || *action != "" && !recordAction}
		for _, t := range []struct {
			flag, v string
			into    *time.Time
		}{{"-since", *since, &f.Since}, {"-until", *until, &f.Until}} {
			if t.v == "" {
				continue
			}
			v, err := time.Parse(time.RFC3339, t.v)
			if err != nil {
				return f, usageError{fmt.Sprintf("%s: want a time such as 2026-12-01T00:00:00Z, got %q", t.flag, t.v)}
			}
			*t.into = v
		}
		return f, nil
	}
}

// parseWithFiles parses flags followed by file names.
func parseWithFiles(fs *flags, args []string, what string) ([]string, error) {
	if slices.ContainsFunc(args, isHelp) {
		fs.SetOutput(fs.stdout)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelpShown
		}
		return nil, usageError{err.Error()}
	}
	if fs.NArg() == 0 {
		return nil, usageError{what + " needs at least one audit file"}
	}
	for _, a := range fs.Args() {
		if strings.HasPrefix(a, "-") {
			return nil, usageError{fmt.Sprintf("%s: flags come before the files (%s)", what, a)}
		}
	}
	return fs.Args(), nil
}

// readLines reads the trail's lines from files, in the order given.
func readLines(files []string, each func(name string, n int, l audit.Line) error) error {
	for _, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		n := 0
		for line := range bytes.Lines(raw) {
			n++
			line = bytes.TrimSuffix(line, []byte("\n"))
			if len(line) == 0 {
				continue
			}
			l, err := audit.ParseLine(line)
			if err != nil {
				return fmt.Errorf("%s:%d: not an audit line (run audit verify)", name, n)
			}
			if err := each(name, n, l); err != nil {
				return err
			}
		}
	}
	return nil
}

func auditQuery(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit query", "Prints the lines of audit files that the flags select, in the order of the files: as a table, JSON lines (as written) or CSV. Flags come before the files. Run audit verify first: query trusts what it reads.", stdout, stderr)
	filter := auditFilterFlags(fs)
	format := fs.String("format", "table", "table, json or csv")
	files, err := parseWithFiles(fs, args, "audit query")
	if err != nil {
		return err
	}
	f, err := filter()
	if err != nil {
		return err
	}
	var out func(audit.Line) error
	switch *format {
	case "table":
		tw := tabwriter.NewWriter(stdout, 2, 0, 2, ' ', 0)
		defer tw.Flush()
		fmt.Fprintln(tw, strings.Join(audit.Columns, "\t"))
		out = func(l audit.Line) error { _, err := fmt.Fprintln(tw, strings.Join(l.Row(), "\t")); return err }
	case "json":
		out = func(l audit.Line) error { _, err := stdout.Write(append(l.Raw, '\n')); return err }
	case "csv":
		cw := csv.NewWriter(stdout)
		defer cw.Flush()
		cw.Write(audit.Columns)
		out = func(l audit.Line) error { return cw.Write(l.Row()) }
	default:
		return usageError{fmt.Sprintf("-format: want table, json or csv, got %q", *format)}
	}
	return readLines(files, func(_ string, _ int, l audit.Line) error {
		if f.Match(l) {
			return out(l)
		}
		return nil
	})
}

func auditTail(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit tail", "Prints the last -n records of an audit file as a table.", stdout, stderr)
	n := fs.Int("n", 20, "how many records")
	files, err := parseWithFiles(fs, args, "audit tail")
	if err != nil {
		return err
	}
	if *n <= 0 {
		return usageError{"-n: want a positive count"}
	}
	var last []audit.Line
	if err := readLines(files, func(_ string, _ int, l audit.Line) error {
		if (audit.Filter{Events: true}).Match(l) {
			last = append(last, l)
			if len(last) > *n {
				last = last[1:]
			}
		}
		return nil
	}); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 2, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(audit.Columns, "\t"))
	for _, l := range last {
		fmt.Fprintln(tw, strings.Join(l.Row(), "\t"))
	}
	return tw.Flush()
}

func auditExport(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit export", `Verifies audit files with -pub, then writes the lines the flags select to -out as an extract: a chain of its own, each selected line embedded whole ({"event":"exported","source":"CHAIN:SEQ","line":…}), signed with -key (audit.signing_key). The extract verifies alone with audit verify -pub; each embedded line is the original, byte for byte. Refuses if the source does not verify.`, stdout, stderr)
	pub := fs.String("pub", "", "the public keyset `FILE` the source verifies with (required)")
	key := fs.String("key", "", "the signing keyset `FILE` that signs the extract (required)")
	outPath := fs.String("out", "", "the extract's `FILE` (required; not overwritten)")
	filter := auditFilterFlags(fs)
	files, err := parseWithFiles(fs, args, "audit export")
	if err != nil {
		return err
	}
	if *pub == "" || *key == "" || *outPath == "" {
		return usageError{"audit export needs -pub FILE, -key FILE and -out FILE"}
	}
	f, err := filter()
	if err != nil {
		return err
	}
	v, err := loadVerifier(*pub)
	if err != nil {
		return err
	}
	signer, err := loadSigner(*key)
	if err != nil {
		return err
	}
	var in []audit.Input
	for _, name := range files {
		fh, err := os.Open(name)
		if err != nil {
			return err
		}
		defer fh.Close()
		in = append(in, audit.Input{Name: name, R: fh})
	}
	rep, err := audit.Verify(in, v, audit.VerifyOptions{})
	if err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("the source does not verify, nothing exported: %s", rep.Problem)
	}
	out, err := os.OpenFile(*outPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	sink := audit.NewWriterSink(*outPath, out)
	a := audit.New(audit.Options{FailClosed: true, Sinks: []audit.Sink{sink}, Signer: signer, Instance: "export"})
	ctx := context.Background()
	var verified, selected int
	for _, c := range rep.Chains {
		verified += int(c.Verified)
	}
	if err := a.Event(ctx, "export", "files", strconv.Itoa(len(files)), "filter", describeFilter(f)); err != nil {
		a.Close()
		out.Close()
		return err
	}
	err = readLines(files, func(_ string, _ int, l audit.Line) error {
		if !f.Match(l) {
			return nil
		}
		selected++
		return a.Event(ctx, "exported", "source", l.Chain+":"+strconv.FormatUint(l.Seq, 10), "line", string(l.Raw))
	})
	a.Close()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("the extract %s is incomplete: %w", *outPath, err)
	}
	fmt.Fprintf(stdout, "exported %d lines to %s (source: %d lines in %d chains, verified)\n", selected, *outPath, rep.Lines, len(rep.Chains))
	return nil
}

func describeFilter(f audit.Filter) string {
	var parts []string
	for _, kv := range [][2]string{{"org", f.Org}, {"user", f.User}, {"route", f.Route}, {"action", f.Action}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	if !f.Since.IsZero() {
		parts = append(parts, "since="+f.Since.Format(time.RFC3339))
	}
	if !f.Until.IsZero() {
		parts = append(parts, "until="+f.Until.Format(time.RFC3339))
	}
	if f.Events {
		parts = append(parts, "events")
	}
	return strings.Join(parts, " ")
}
