package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/phiguard/phiguard/openapi"
	"github.com/phiguard/phiguard/policy"
)

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", "Validates a policy file and prints every problem as file:line:col: key: message.", stdout, stderr)
	config := fs.String("config", "", "the policy `FILE` to validate (required)")
	spec := fs.String("openapi", "", "also check the policy against the app's OpenAPI 3.0/3.1 `SPEC` (JSON or YAML): operations no route covers, routes that cover none, selectors that can never match (errors: exit 1), sensitive-looking fields no selector covers")
	withKeys := fs.Bool("keys", false, "also open the keyring as serve would, and check that every org under orgs has keys that unwrap (and search keys when routes have searchable fields)")
	sensitive := fs.String("sensitive", "", "with -openapi: the property `NAMES` that look sensitive, comma-separated, replacing the default list; +NAMES adds to it")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	names, err := openapi.ParseSensitive(*sensitive)
	if err != nil {
		return usageError{"-sensitive: " + err.Error()}
	}
	if *sensitive != "" && *spec == "" {
		return usageError{"-sensitive applies to -openapi SPEC"}
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
	for _, w := range p.Warnings {
		fmt.Fprintln(stderr, w.String())
	}
	fmt.Fprintf(stdout, "%s: ok (%d routes, default %s)\n", *config, len(p.Routes), p.File.Default)
	var failed error
	if *withKeys {
		if err := checkKeys(context.Background(), p, stdout, stderr); err != nil {
			if errors.As(err, new(usageError)) {
				return err
			}
			failed = err
		}
	}
	if *spec != "" {
		if err := checkOpenAPI(p, *spec, names, stdout); err != nil {
			return err
		}
	}
	return failed
}

// checkOpenAPI prints how the policy covers the app's OpenAPI spec, one
// finding a line and a summary; any error finding fails the check.
func checkOpenAPI(p *policy.Policy, spec string, sensitive []string, stdout io.Writer) error {
	rep, err := openapi.Check(context.Background(), p, spec, openapi.Options{Sensitive: sensitive})
	if err != nil {
		return err
	}
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	if rep.Errors() > 0 {
		return errReported
	}
	return nil
}
