package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/phiguard/phiguard/explain"
	"github.com/phiguard/phiguard/policy"
)

const explainAbout = `Runs a sample request (and the app's answer) through phiguard's engine
without keys, an identity provider or an audit trail, and shows the route
matched, the decision, and for each selector of the route where it acted
and what it did; then the body's fields no selector took. Values appear as
types and lengths only (string(42), number, object(3 keys), array(2)).

The request is raw HTTP/1.1 text: a request line, headers, a blank line,
the body (as curl -v or a browser's "copy as HTTP" shows it). A Host that
an egress route names, or an absolute URL, explains the app's call to a
vendor. The answer is raw HTTP, or a JSON body taken as 200
application/json. The caller is the one the flags name: no token is
verified.

Exit status: 0 when explained (a refusal is an explanation), 1 when a file
cannot be read or the policy does not load, 2 for a usage error.`

// maxSample bounds a sample file.
const maxSample = 64 << 20

func cmdExplain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("explain", explainAbout, stdout, stderr)
	config := fs.String("config", "", "the policy `FILE` (required)")
	request := fs.String("request", "", "the sample request `FILE`, or - for stdin (required)")
	response := fs.String("response", "", "the app's (or the vendor's) answer `FILE`, or - for stdin")
	org := fs.String("org", "", "the caller's organization `ID` (default: the policy's first org)")
	user := fs.String("user", "", "the caller's user `ID` (default: explain)")
	role := fs.String("role", "", "the caller's `ROLE` (default: none)")
	amr := fs.String("amr", "", "the caller's authentication methods, comma-separated `LIST` (mfa, otp…: HIPAA orgs need one)")
	peer := fs.String("peer", "", "the client's `IP` address (a route that takes the org from a header needs a trusted gateway)")
	asJSON := fs.Bool("json", false, "print the explanation as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *config == "":
		return usageError{"explain needs -config FILE"}
	case *request == "":
		return usageError{"explain needs -request FILE (or - for stdin)"}
	case *request == "-" && *response == "-":
		return usageError{"only one of -request and -response can read stdin"}
	}
	o, err := explainCaller(*org, *user, *role, *amr, *peer)
	if err != nil {
		return err
	}
	p, err := loadReporting(*config, stderr)
	if err != nil {
		return err
	}
	req, err := readSample(*request, stdin)
	if err != nil {
		return err
	}
	var resp []byte
	if *response != "" {
		if resp, err = readSample(*response, stdin); err != nil {
			return err
		}
	}
	e, err := explain.Explain(ctx, p, req, resp, o)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(e)
	}
	return e.WriteText(stdout)
}

// explainCaller is the stand-in caller the flags describe.
func explainCaller(org, user, role, amr, peer string) (explain.Options, error) {
	o := explain.Options{Org: org, User: user, Role: role}
	for m := range strings.SplitSeq(amr, ",") {
		if m = strings.TrimSpace(m); m != "" {
			o.AMR = append(o.AMR, m)
		}
	}
	if peer != "" {
		ip, err := netip.ParseAddr(peer)
		if err != nil {
			return o, usageError{fmt.Sprintf("-peer: want an IP address, got %q", peer)}
		}
		o.Peer = ip
	}
	return o, nil
}

// loadReporting loads the policy at path and prints its problems and
// warnings as check does; a policy that does not load is errReported.
func loadReporting(path string, stderr io.Writer) (*policy.Policy, error) {
	p, err := policy.Load(path)
	if err != nil {
		var le *policy.LoadError
		if errors.As(err, &le) {
			fmt.Fprintln(stderr, le.Error())
			fmt.Fprintf(stderr, "%d problem(s) in %s\n", len(le.Problems), path)
			return nil, errReported
		}
		return nil, err
	}
	for _, w := range p.Warnings {
		fmt.Fprintln(stderr, w.String())
	}
	return p, nil
}

// readSample reads a sample file, or stdin for "-".
func readSample(name string, stdin io.Reader) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxSample+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", name, err)
	case len(b) > maxSample:
		return nil, fmt.Errorf("%s: larger than %d MiB", name, maxSample>>20)
	}
	return b, nil
}
