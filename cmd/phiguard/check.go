package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/phiguard/phiguard/policy"
)

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", "Validates a policy file and prints every problem as file:line:col: key: message.", stdout, stderr)
	config := fs.String("config", "", "the policy `FILE` to validate (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *config == "" {
		return usageError{"check needs -config FILE"}
	}
	p, err := policy.Load(*config)
	if err != nil {
		var le *policy.LoadError
		if errors.As(err, &le) {
			fmt.Fprintln(stderr, le.Error())
			fmt.Fprintf(stderr, "%d problem(s) in %s\n", len(le.Problems), *config)
			return errReported
		}
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (%d routes, default %s)\n", *config, len(p.Routes), p.File.Default)
	return nil
}
