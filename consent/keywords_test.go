package consent

import (
	"bytes"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	def := DefaultKeywords()
	custom := Keywords{OptOut: []string{"STOP", "ARRET", "baja"}, OptIn: []string{"ALTA", "subscribe2"}}
	for _, c := range []struct {
		k    Keywords
		text string
		want State
	}{
		{def, "STOP", Revoked},
		{def, "stop", Revoked},
		{def, "Stop.", Revoked},
		{def, "  STOP ", Revoked},
		{def, "\tstop!\r\n", Revoked},
		{def, "STOP!!!", Revoked},
		{def, "stop . !", Revoked},
		{def, "\u00a0STOP\u00a0", Revoked}, // no-break spaces
		{def, "StopAll", Revoked},
		{def, "STOP ALL", Revoked},
		{def, "stop\n\nall", Revoked},
		{def, "unsubscribe", Revoked},
		{def, "Cancel", Revoked},
		{def, "end", Revoked},
		{def, "QUIT", Revoked},
		{def, "revoke", Revoked},
		{def, "OPTOUT", Revoked},
		{def, "opt out", Revoked},
		{def, "Opt-Out.", Revoked},
		{def, "START", Granted},
		{def, "start", Granted},
		{def, "Yes!", Granted},
		{def, "unstop", Granted},
		{def, "UN STOP", Granted},
		{def, "", Unknown},
		{def, "   ", Unknown},
		{def, ".", Unknown},
		{def, "!.", Unknown},
		{def, "-", Unknown},
		{def, "please stop texting me", Unknown},
		{def, "STOP PLEASE", Unknown},
		{def, "STOP?", Unknown},
		{def, ".STOP", Unknown},
		{def, "S.T.O.P", Unknown},
		{def, "STOPP", Unknown},
		{def, "STO", Unknown},
		{def, "stop stop", Unknown},
		{def, "yes please", Unknown},
		{def, "ＳＴＯＰ", Unknown}, // fullwidth letters are not ASCII
		{def, "STOP\x00", Unknown},
		{def, "\xffSTOP", Unknown},
		{def, "HELP", Unknown},
		{custom, "arret", Revoked},
		{custom, "Baja.", Revoked},
		{custom, "alta", Granted},
		{custom, "SUBSCRIBE2", Granted},
		{custom, "STOP", Revoked},
		{custom, "UNSUBSCRIBE", Unknown},
		{custom, "START", Unknown},
		{Keywords{}, "STOP", Unknown},
		{Keywords{OptOut: []string{""}}, "", Unknown},
		{Keywords{OptOut: []string{"GO"}, OptIn: []string{"GO"}}, "go", Revoked}, // unchecked overlap: opt-out wins
	} {
		if got := c.k.Classify([]byte(c.text)); got != c.want {
			t.Errorf("%v.Classify(%q): got %v, want %v", c.k, c.text, got, c.want)
		}
	}
}

func TestClassifyDoesNotAllocate(t *testing.T) {
	k := DefaultKeywords()
	for _, text := range []string{"  Stop. ", "opt - out", "please stop texting me", "YES", "\u00a0quit!"} {
		b := []byte(text)
		if n := testing.AllocsPerRun(100, func() { k.Classify(b) }); n != 0 {
			t.Errorf("%q: got %v allocations, want 0", text, n)
		}
	}
}

func TestKeywordsCheck(t *testing.T) {
	if err := DefaultKeywords().Check(); err != nil {
		t.Fatalf("the default keywords: %v", err)
	}
	for _, c := range []struct {
		name string
		k    Keywords
		want []string // in the error, in order
	}{
		{"none", Keywords{}, []string{"STOP must be an opt-out keyword"}},
		{"no STOP", Keywords{OptOut: []string{"QUIT"}}, []string{"STOP must be"}},
		{"stop in any case will do", Keywords{OptOut: []string{"Stop"}}, nil},
		{"empty", Keywords{OptOut: []string{"STOP", ""}, OptIn: []string{""}}, []string{"opt_out[1]: empty keyword", "opt_in[0]: empty keyword"}},
		{"white space inside", Keywords{OptOut: []string{"STOP", "STOP ALL"}}, []string{`opt_out[1]: "STOP ALL": a keyword is ASCII letters and digits`}},
		{"a hyphen", Keywords{OptOut: []string{"STOP"}, OptIn: []string{"opt-in"}}, []string{`opt_in[0]: "opt-in"`}},
		{"punctuation", Keywords{OptOut: []string{"STOP."}}, []string{"STOP must be", `opt_out[0]: "STOP."`}},
		{"not ASCII", Keywords{OptOut: []string{"STOP", "ARRÊT"}}, []string{`opt_out[1]: "ARRÊT"`}},
		{"too long", Keywords{OptOut: []string{"STOP", strings.Repeat("A", 33)}}, []string{"opt_out[1]: a keyword is at most 32 characters"}},
		{"in both lists", Keywords{OptOut: []string{"STOP", "END"}, OptIn: []string{"START", "end"}}, []string{`opt_in[1]: "end" is also an opt-out keyword`}},
		{"STOP as opt-in", Keywords{OptOut: []string{"QUIT"}, OptIn: []string{"STOP"}}, []string{"STOP must be an opt-out keyword"}},
		{"STOP in both", Keywords{OptOut: []string{"STOP"}, OptIn: []string{"START", "stop"}}, []string{`opt_in[1]: "stop" is also an opt-out keyword`}},
		{"every problem at once", Keywords{OptOut: []string{"", "a b"}, OptIn: []string{"a-b", "END", ""}}, []string{"STOP must be", "opt_out[0]", "opt_out[1]", "opt_in[0]", "opt_in[2]"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.k.Check()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want %q", c.want)
			}
			msg := err.Error()
			for _, w := range c.want {
				i := strings.Index(msg, w)
				if i < 0 {
					t.Fatalf("got %q, want it to hold %q", msg, w)
				}
				msg = msg[i+len(w):]
			}
		})
	}
}

// FuzzClassify: Classify never panics, ignores case, white space around
// the message and trailing '.' and '!', and answers Revoked or Granted
// only for a message that holds a keyword's letters and no other ones.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"STOP", "stop.", "  Start! ", "opt-out", "STOP ALL", "please stop", "", "\u00a0", "\xff", "YES\u3000", "st\x00op"} {
		f.Add([]byte(s))
	}
	k := DefaultKeywords()
	f.Fuzz(func(t *testing.T, text []byte) {
		got := k.Classify(text)
		if got != Unknown && got != Revoked && got != Granted {
			t.Fatalf("%q: got %v", text, got)
		}
		if up := k.Classify(bytes.ToUpper(text)); up != got && isASCII(text) {
			t.Errorf("%q: got %v, upper case got %v", text, got, up)
		}
		padded := append(append([]byte(" \t"), text...), " !. "...)
		if p := k.Classify(padded); p != got {
			t.Errorf("%q: got %v, padded got %v", text, got, p)
		}
		if got == Unknown {
			return
		}
		var letters []byte
		for _, c := range bytes.ToUpper(trimMessage(text)) {
			if c != ' ' && c != '-' && c != '\t' && c != '\n' && c != '\r' && c != '\v' && c != '\f' && c < 0x80 {
				letters = append(letters, c)
			}
		}
		list := k.OptOut
		if got == Granted {
			list = k.OptIn
		}
		if !holds(list, string(letters)) {
			t.Errorf("%q: got %v for letters %q", text, got, letters)
		}
	})
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
