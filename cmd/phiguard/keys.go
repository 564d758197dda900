package main

import (
	"context"
	"fmt"
	"io"

	"github.com/phiguard/phiguard/keys"
)

func cmdKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"keys needs a subcommand: init, create or list"}
	}
	sub := args[0]
	fs := newFlags("keys "+sub, stderr)
	dir := fs.String("keyring", "", "keyring folder (required)")
	var org *string
	if sub == "create" {
		org = fs.String("org", "", "organization id (required)")
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
