package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/policy"
)

const keysUsage = `Usage: phiguard keys SUBCOMMAND (-config FILE | -keyring DIR) [flags]

Manages the keyring: each organization's data keys, wrapped by the local
master key or by AWS KMS. With -config, the policy's keys section says
where the keyring is and what wraps new keysets; with -keyring, the
local master key does (DIR/master.json, -master FILE, or
$PHIGUARD_MASTER_KEY).

Subcommands:
  init     create the local master key
  create   add an organization's data keys (-org ID)
  list     list the organizations: wrapping key, primary key, every key

phiguard keys SUBCOMMAND -h shows a subcommand's flags.
`

var keysAbout = map[string]string{
	"init":   "Creates the local master key: DIR/master.json, or -master FILE (keep it apart from the keyring). Keep it secret; back it up.",
	"create": "Adds the data keys of organization ID, wrapped by the master key or, with a policy whose keys.provider is aws-kms, by the org's KMS key.",
	"list":   "Lists each organization's wrapping key, primary key and keys (id, created, status). Opening the keyring checks every keyset unwraps.",
}

func cmdKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, keysUsage)
		return usageError{"keys needs a subcommand: init, create or list"}
	}
	sub := args[0]
	if isHelp(sub) || sub == "help" {
		fmt.Fprint(stdout, keysUsage)
		return errHelpShown
	}
	switch sub {
	case "init", "create", "list":
	default:
		return usageError{fmt.Sprintf("unknown keys subcommand %q (want init, create or list)", sub)}
	}
	fs := newFlags("keys "+sub, keysAbout[sub], stdout, stderr)
	dir := fs.String("keyring", "", "the keyring folder `DIR`")
	master := fs.String("master", "", "the local master key `FILE` (default DIR/master.json)")
	var config, org *string
	if sub != "init" {
		config = fs.String("config", "", "the policy `FILE` whose keys section to use, instead of -keyring")
	}
	if sub == "create" {
		org = fs.String("org", "", "the organization `ID` (required)")
	}
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if sub == "init" {
		if *dir == "" && *master == "" {
			return usageError{"keys init needs -keyring DIR or -master FILE"}
		}
		path := *master
		if path == "" {
			path = filepath.Join(*dir, keys.MasterKeyFile)
		} else if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		if *dir != "" {
			if err := os.MkdirAll(*dir, 0o700); err != nil {
				return fmt.Errorf("create keyring folder: %w", err)
			}
		}
		if err := keys.InitLocalFile(path); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created master key %s (keep it secret and apart from the keyring; back it up)\n", path)
		return nil
	}
	k, orgs, err := keysSection(*config, *dir, *master)
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		if *org == "" {
			return usageError{"keys create needs -org ID"}
		}
		p, err := providerFor(ctx, k, orgs, nil)
		if err != nil {
			return err
		}
		w, err := keys.CreateOrg(ctx, k.Keyring, *org, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created keys for organization %s, wrapped by %s\n", *org, w)
	case "list":
		ring, err := openKeyring(ctx, k, orgs, nil)
		if err != nil {
			return err
		}
		printKeyring(stdout, ring)
	}
	return nil
}

// keysSection is the keys section of the policy at config, or, without
// one, a local keyring in dir.
func keysSection(config, dir, master string) (*policy.Keys, []policy.Org, error) {
	switch {
	case config != "" && dir != "":
		return nil, nil, usageError{"give -config FILE or -keyring DIR, not both"}
	case config != "":
		pol, err := policy.Load(config)
		if err != nil {
			return nil, nil, err
		}
		if pol.File.Keys == nil {
			return nil, nil, fmt.Errorf("%s has no keys section", config)
		}
		return pol.File.Keys, pol.File.Orgs, nil
	case dir != "":
		if master == "" {
			master = filepath.Join(dir, keys.MasterKeyFile)
		}
		return &policy.Keys{Provider: policy.ProviderLocal, Keyring: dir, MasterKey: master, LoadTimeout: policy.DefaultKeysLoadTimeout}, nil, nil
	}
	return nil, nil, usageError{"give -config FILE or -keyring DIR"}
}

// printKeyring writes one block per organization: no key material.
func printKeyring(w io.Writer, ring *keys.Keyring) {
	for _, org := range ring.Orgs() {
		info, _ := ring.Info(org)
		fmt.Fprintf(w, "%s\twrapped by %s\tprimary %08x\n", org, info.Wrap, info.Primary)
		for _, k := range info.Keys {
			created := "unknown"
			if !k.Created.IsZero() {
				created = k.Created.Format(time.RFC3339)
			}
			fmt.Fprintf(w, "  key %08x\tcreated %s\t%s\n", k.ID, created, k.Status)
		}
	}
}
