// Command demo runs the messaging app behind phiguard with a fresh keyring
// and demo identities, and prints copy-paste curl lines (make demo). With
// -check it runs the same steps itself and exits non-zero if any fails.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "folder with the phiguard and messaging-app binaries")
	flag.StringVar(&o.policy, "policy", "configs/demo.yaml", "demo policy to copy")
	flag.BoolVar(&o.check, "check", false, "run the demo steps, check their outcome and exit")
	flag.Parse()
	o.out = os.Stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := runDemo(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}
