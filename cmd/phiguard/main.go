// Command phiguard is the encryption and audit sidecar: serve, check, keys, version.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/phiguard/phiguard/internal/liblog"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintln(os.Stderr, "phiguard:", err)
		}
		os.Exit(exitCode(err))
	}
}

// errReported: the command already printed what went wrong.
var errReported = errors.New("reported")

// usageError marks a command line that could not be understood.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

const usage = `phiguard — encryption and audit sidecar for messaging apps that carry PHI

Usage:
  phiguard serve -config FILE           run the proxy
  phiguard check -config FILE           validate a policy; print every problem
  phiguard explain -config FILE -request FILE|- [-response FILE] [-role ROLE] [-json]
                                        what phiguard does to a sample request, selector by selector
  phiguard keys init -keyring DIR       create the keyring's local master key
  phiguard keys create -keyring DIR -org ID
                                        add an organization's data keys
  phiguard keys list -keyring DIR       list the organizations with keys
  phiguard sessions revoke -config FILE (-org ID [-user ID] | -user ID | -session REF)
                                        end sessions now (remote wipe)
  phiguard consent grant|revoke|show|list -config FILE -org ID [-number PHONE]
                                        the SMS consent registry (STOP/START)
  phiguard audit keygen -out DIR        the checkpoint signing key, and its public half
  phiguard audit verify -pub KEY FILE...
                                        prove audit files whole, or name the first bad line
  phiguard version                      print the version
`

// run runs the command in args. A command asked for its usage (-h,
// -help, --help) prints it on stdout and succeeds.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, stdout, stderr)
	if errors.Is(err, errHelpShown) {
		return nil
	}
	return err
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], stdout, stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "keys":
		return cmdKeys(ctx, args[1:], stdout, stderr)
	case "sessions":
		return cmdSessions(ctx, args[1:], stdout, stderr)
	case "consent":
		return cmdConsent(ctx, args[1:], stdout, stderr)
	case "audit":
		return cmdAudit(args[1:], stdout, stderr)
	case "explain":
		return cmdExplain(ctx, args[1:], os.Stdin, stdout, stderr)
	case "version":
		fs := newFlags("version", "Prints phiguard's version.", stdout, stderr)
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "phiguard", version)
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}

// routeStdLog sends the process-wide standard logger, through which
// net/http's Transport reports an unsolicited response with its first bytes,
// to logger with every value withheld (see liblog), and returns a function
// that restores the previous output, flags and prefix. It is the one place
// phiguard touches global state; calls must not overlap.
func routeStdLog(logger *slog.Logger) (restore func()) {
	out, flags, prefix := log.Writer(), log.Flags(), log.Prefix()
	log.SetOutput(liblog.Writer(logger, "go-stdlib"))
	log.SetFlags(0)
	log.SetPrefix("")
	return func() {
		log.SetOutput(out)
		log.SetFlags(flags)
		log.SetPrefix(prefix)
	}
}

// errHelpShown: a command printed its usage because it was asked to.
var errHelpShown = errors.New("help shown")

// newFlags makes a command's flag set. about says what the command does;
// its usage goes to stdout when asked for (-h) and to stderr with a flag
// error.
func newFlags(name, about string, stdout, stderr io.Writer) *flags {
	fs := &flags{FlagSet: flag.NewFlagSet("phiguard "+name, flag.ContinueOnError), stdout: stdout}
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: phiguard %s%s\n\n%s\n", name, flagSynopsis(fs), about)
		if flagCount(fs) > 0 {
			fmt.Fprintln(fs.Output(), "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// flags is a command's flag set, and where a usage asked for goes.
type flags struct {
	*flag.FlagSet
	stdout io.Writer
}

func flagSynopsis(fs *flags) string {
	var b strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		word := "-" + f.Name
		if name != "" {
			word += " " + strings.ToUpper(name)
		}
		if !strings.Contains(usage, "(required)") {
			word = "[" + word + "]"
		}
		b.WriteString(" " + word)
	})
	return b.String()
}

func flagCount(fs *flags) (n int) {
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n
}

func isHelp(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }

func parseFlags(fs *flags, args []string) error {
	if slices.ContainsFunc(args, isHelp) {
		fs.SetOutput(fs.stdout)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelpShown
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}
