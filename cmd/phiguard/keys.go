package main

import (
	"context"
	"fmt"
	"io"

	"github.com/phiguard/phiguard/keys"
)

const keysUsage = `Usage: phiguard keys SUBCOMMAND -keyring DIR [flags]

Manages the keyring: a folder with a local master key and each
organization's wrapped data keys.

Subcommands:
  init     create the keyring's local master key
  create   add an organization's data keys (-org ID)
  list     list the organizations with keys

phiguard keys SUBCOMMAND -h shows a subcommand's flags.
`

var keysAbout = map[string]string{
	"init":   "Creates the keyring's local master key in DIR (made if missing). Keep it secret; back it up.",
	"create": "Adds the data keys of organization ID, wrapped by the master key.",
	"list":   "Lists the organizations that have keys, one per line.",
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
	fs := newFlags("keys "+sub, keysAbout[sub], stdout, stderr)
	dir := fs.String("keyring", "", "the keyring folder `DIR` (required)")
	var org *string
	if sub == "create" {
		org = fs.String("org", "", "the organization `ID` (required)")
	}
	switch sub {
	case "init", "create", "list":
	default:
		return usageError{fmt.Sprintf("unknown keys subcommand %q (want init, create or list)", sub)}
	}
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *dir == "" {
		return usageError{"keys " + sub + " needs -keyring DIR"}
	}
	switch sub {
	case "init":
		if err := keys.InitLocal(*dir); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created master key %s/%s (keep it secret; back it up)\n", *dir, keys.MasterKeyFile)
	case "create":
		if *org == "" {
			return usageError{"keys create needs -org ID"}
		}
		p, err := keys.OpenLocal(*dir)
		if err != nil {
			return err
		}
		if err := keys.CreateOrg(ctx, *dir, *org, p); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created keys for organization %s\n", *org)
	case "list":
		p, err := keys.OpenLocal(*dir)
		if err != nil {
			return err
		}
		k, err := keys.Open(ctx, *dir, p)
		if err != nil {
			return err
		}
		for _, o := range k.Orgs() {
			fmt.Fprintln(stdout, o)
		}
	}
	return nil
}
