package main

import (
	"bytes"
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
	"strings"

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
	if slices.ContainsFunc(args, isHelp) {
		fs.SetOutput(fs.stdout)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelpShown
		}
		return usageError{err.Error()}
	}
	files := fs.Args()
	if *pub == "" || len(files) == 0 {
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
