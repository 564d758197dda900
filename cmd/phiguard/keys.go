package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/policy"
)

const keysUsage = `Usage: phiguard keys SUBCOMMAND (-config FILE | -keyring DIR) [flags]

Manages the keyring: each organization's data keys, wrapped by the local
master key or by AWS KMS. With -config, the policy's keys section says
where the keyring is and what wraps new keysets, and records go to its
audit sinks; with -keyring, the local master key does (DIR/master.json,
-master FILE, or $PHIGUARD_MASTER_KEY), and records go to DIR/audit.jsonl.
Every command that changes keys prints what it did and writes an audit
record.

Subcommands:
  init       create the local master key
  create     add an organization's data keys (-org ID)
  list       list the organizations: wrapping key, primary key, every key
  rotate     give an org a new primary key; older keys keep decrypting
  rewrap     wrap an org's keyset under another key (-to KEY): KMS key, or local
  reencrypt  rewrite every token in JSON or JSON lines from stdin to stdout
             under its org's primary key, so that older keys can be retired
  retire     destroy one key of an org (-key ID -confirm ID), once -scan
             finds no token of it in the exported data
  expire     apply the orgs' rotate_every and retain (policy orgs[])
  shred      destroy an org's keys for good (-confirm ID): crypto-shredding
  rotate-master  a new local master key (-new FILE), every keyset of the old one rewrapped

phiguard keys SUBCOMMAND -h shows a subcommand's flags.
`

var keysAbout = map[string]string{
	"init":          "Creates the local master key: DIR/master.json, or -master FILE (keep it apart from the keyring). Keep it secret; back it up.",
	"create":        "Adds the data keys of organization ID, wrapped by the master key or, with a policy whose keys.provider is aws-kms, by the org's KMS key.",
	"list":          "Lists each organization's wrapping key, primary key and keys (id, created, status). Opening the keyring checks every keyset unwraps.",
	"rotate":        "Adds a new key to the org's keyset and makes it the primary: new tokens use it, and every older key keeps opening the tokens it sealed. With -search, the same for the org's search keys (made if it has none): stored searchable values must then be re-indexed with reencrypt before lookups and searches find them.",
	"rewrap":        "Wraps the org's keyset under -to KEY (a KMS key ARN, id or alias/NAME, or \"local\" for the master key). The data keys, tokens and the app's data are untouched.",
	"reencrypt":     "Reads JSON values or JSON lines on stdin and writes them to stdout with every phiguard token sealed again under its org's primary key; reports counts on stderr. Tokens that do not open are written unchanged and counted.",
	"retire":        "Destroys key -key of the org: tokens it sealed never open again. Not the primary. Run reencrypt over the stored data first, then prove it: -scan reads exports of the stored data and refuses while any of them holds a token of the key.",
	"expire":        "For every org (or -org) with rotate_every or retain in the policy: a new primary once the primary is rotate_every old, and the keys that stopped sealing retain ago destroyed.",
	"rotate-master": "Creates a new local master key in -new FILE and rewraps every keyset of the current master key under it; data keys and tokens are untouched. Then point keys.master_key at FILE, deliver the keyring, and destroy the old master key.",
	"shred":         "Destroys every key of the org (crypto-shredding): its tokens, wherever stored, show the mask with reason key_shredded. With the org's own KMS key, -delete-kms-key also schedules that key's deletion.",
}

func cmdKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, keysUsage)
		return usageError{"keys needs a subcommand"}
	}
	sub := args[0]
	if isHelp(sub) || sub == "help" {
		fmt.Fprint(stdout, keysUsage)
		return errHelpShown
	}
	if _, ok := keysAbout[sub]; !ok {
		return usageError{fmt.Sprintf("unknown keys subcommand %q (see phiguard keys -h)", sub)}
	}
	fs := newFlags("keys "+sub, keysAbout[sub], stdout, stderr)
	dir := fs.String("keyring", "", "the keyring folder `DIR`")
	master := fs.String("master", "", "the local master key `FILE` (default DIR/master.json)")
	var config, org, to, keyID, confirm *string
	var deleteKMS, unscanned, searchKeys *bool
	var pendingDays *int
	var scans fileList
	if sub != "init" {
		config = fs.String("config", "", "the policy `FILE` whose keys section to use, instead of -keyring")
	}
	switch sub {
	case "create", "rotate", "rewrap", "retire", "shred":
		org = fs.String("org", "", "the organization `ID` (required)")
	case "expire":
		org = fs.String("org", "", "only this organization `ID`")
	}
	switch sub {
	case "rewrap":
		to = fs.String("to", "", "the `KEY` to wrap under: a KMS key, or local (required)")
	case "rotate-master":
		to = fs.String("new", "", "the new master key's `FILE`, which must not exist (required)")
	case "rotate":
		searchKeys = fs.Bool("search", false, "rotate the org's search keys (exact-match and index), or make them if it has none, instead of its data keys")
	case "retire":
		keyID = fs.String("key", "", "the key `ID` to destroy, 8 hex digits as list shows it (required)")
		confirm = fs.String("confirm", "", "the key `ID` again (required)")
		fs.Var(&scans, "scan", "an export of the stored data `FILE` (any text: JSON, CSV, SQL dump; - for stdin) that must hold no token of the key; repeat for several")
		unscanned = fs.Bool("unscanned", false, "retire without -scan, on other evidence (phiguard_key_tokens_opened_total); the audit record says so")
	case "shred":
		confirm = fs.String("confirm", "", "the organization `ID` again (required)")
		deleteKMS = fs.Bool("delete-kms-key", false, "also schedule the deletion of the org's own KMS key")
		pendingDays = fs.Int("pending-days", 30, "the KMS deletion's waiting `DAYS` (7 to 30): the key can still be recovered meanwhile")
	}
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if sub == "init" {
		return keysInit(stdout, *dir, *master)
	}
	for name, v := range map[string]*string{"-org": org, "-to": to, "-key": keyID, "-confirm": confirm} {
		if name == "-to" && sub == "rotate-master" {
			name = "-new"
		}
		if v != nil && *v == "" && !(name == "-org" && sub == "expire") {
			return usageError{fmt.Sprintf("keys %s needs %s", sub, name)}
		}
	}
	k, pol, err := keysSection(*config, *dir, *master)
	if err != nil {
		return err
	}
	var orgs []policy.Org
	if pol != nil {
		orgs = pol.File.Orgs
	}
	if sub == "list" {
		return keysList(ctx, k, orgs, stdout, stderr)
	}
	p, err := providerFor(ctx, k, orgs, nil)
	if err != nil {
		return err
	}
	trail, err := cliAuditor(k, pol, stderr)
	if err != nil {
		return err
	}
	defer trail.close()
	op := keyOp{ctx: ctx, k: k, orgs: orgs, p: p, out: stdout, trail: trail}
	if pol != nil {
		op.search = &pol.Search
	}
	switch sub {
	case "create":
		return op.create(*org)
	case "rotate":
		if *searchKeys {
			return op.rotateSearch(*org)
		}
		return op.rotate(*org)
	case "rewrap":
		return op.rewrap(*org, *to)
	case "retire":
		return op.retire(*org, *keyID, *confirm, scans, *unscanned)
	case "expire":
		return op.expire(*org)
	case "shred":
		return op.shred(*org, *confirm, *deleteKMS, *pendingDays)
	case "rotate-master":
		return op.rotateMaster(*to)
	case "reencrypt":
		return op.reencrypt(stdin, stderr)
	}
	return nil
}

// fileList is a flag that may be given more than once.
type fileList []string

func (l *fileList) String() string { return strings.Join(*l, ",") }

func (l *fileList) Set(v string) error {
	if v == "" {
		return errors.New("empty file name")
	}
	*l = append(*l, v)
	return nil
}

// stdin is what reencrypt and retire -scan - read; tests replace it.
var stdin io.Reader = os.Stdin

func keysInit(stdout io.Writer, dir, master string) error {
	if dir == "" && master == "" {
		return usageError{"keys init needs -keyring DIR or -master FILE"}
	}
	path := master
	if path == "" {
		path = filepath.Join(dir, keys.MasterKeyFile)
	} else if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create keyring folder: %w", err)
		}
	}
	if err := keys.InitLocalFile(path); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created master key %s (keep it secret and apart from the keyring; back it up)\n", path)
	return nil
}

// keysSection is the keys section of the policy at config (and the
// policy), or, without one, a local keyring in dir (and no policy).
func keysSection(config, dir, master string) (*policy.Keys, *policy.Policy, error) {
	switch {
	case config != "" && dir != "":
		return nil, nil, usageError{"give -config FILE or -keyring DIR, not both"}
	case config != "" && master != "":
		return nil, nil, usageError{"with -config, the master key is the policy's keys.master_key (or $PHIGUARD_MASTER_KEY), not -master"}
	case config != "":
		pol, err := policy.Load(config)
		if err != nil {
			return nil, nil, err
		}
		if pol.File.Keys == nil {
			return nil, nil, fmt.Errorf("%s has no keys section", config)
		}
		return pol.File.Keys, pol, nil
	case dir != "":
		if master == "" {
			master = filepath.Join(dir, keys.MasterKeyFile)
		}
		return &policy.Keys{Provider: policy.ProviderLocal, Keyring: dir, MasterKey: master, LoadTimeout: policy.DefaultKeysLoadTimeout}, nil, nil
	}
	return nil, nil, usageError{"give -config FILE or -keyring DIR"}
}

// keysList prints every org of the keyring, those whose keysets do not
// unwrap included, and fails (after printing) if any does not.
func keysList(ctx context.Context, k *policy.Keys, orgs []policy.Org, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, k.LoadTimeout)
	defer cancel()
	p, err := providerFor(ctx, k, orgs, nil)
	if err != nil {
		return err
	}
	ring, err := keys.Load(ctx, k.Keyring, p, nil)
	if ring == nil {
		return err
	}
	printKeyring(stdout, ring)
	if err != nil {
		fmt.Fprintln(stderr, "phiguard:", err)
		return errReported
	}
	return nil
}

// printKeyring writes one block per organization: no key material.
func printKeyring(w io.Writer, ring *keys.Keyring) {
	unavailable := ring.Unavailable()
	for _, org := range ring.Orgs() {
		info, _ := ring.Info(org)
		switch {
		case slices.Contains(unavailable, org):
			fmt.Fprintf(w, "%s\tunavailable: its keyset did not unwrap (see below)\n", org)
			continue
		case !info.Shredded.IsZero():
			fmt.Fprintf(w, "%s\tshredded %s (was wrapped by %s)\n", org, info.Shredded.Format(time.RFC3339), info.Wrap)
			continue
		}
		fmt.Fprintf(w, "%s\twrapped by %s\tprimary %08x\n", org, info.Wrap, info.Primary)
		for _, kind := range []struct {
			name string
			keys []keys.KeyStatus
		}{{"key", info.Keys}, {"exact-match key", info.Exact}, {"index key", info.Words}} {
			for _, k := range kind.keys {
				created := "unknown"
				if !k.Created.IsZero() {
					created = k.Created.Format(time.RFC3339)
				}
				fmt.Fprintf(w, "  %s %08x\tcreated %s\t%s\n", kind.name, k.ID, created, k.Status)
			}
		}
		if len(info.Exact) == 0 {
			fmt.Fprintf(w, "  no search keys (searchable fields refused): phiguard keys rotate -org %s -search\n", org)
		}
	}
}
