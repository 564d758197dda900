package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

func exact(t *testing.T, k *Keyring, org, v string) string {
	t.Helper()
	tok, err := k.AppendEncryptExact(context.Background(), nil, org, []byte(v))
	if err != nil {
		t.Fatal(err)
	}
	return string(tok)
}

func indexWord(t *testing.T, k *Keyring, org, w string, chars int) string {
	t.Helper()
	iw, err := k.AppendIndexWord(nil, org, []byte(w), chars)
	if err != nil {
		t.Fatal(err)
	}
	return string(iw)
}

// TestExactTokens: within one org, equal plaintexts seal to equal tokens
// and different ones to different tokens; another org's token of the same
// plaintext differs and is refused to this org; the token opens to the
// plaintext and names its key.
func TestExactTokens(t *testing.T) {
	_, k := newTestKeyring(t, "org_a", "org_b")
	a1, a2 := exact(t, k, "org_a", `"+15551234567"`), exact(t, k, "org_a", `"+15551234567"`)
	if a1 != a2 {
		t.Errorf("one org, one plaintext: %s and %s", a1, a2)
	}
	if other := exact(t, k, "org_a", `"+15551234568"`); other == a1 {
		t.Error("two plaintexts gave one token")
	}
	b := exact(t, k, "org_b", `"+15551234567"`)
	if b == a1 || strings.TrimPrefix(b, "ephi:d1:org_b:") == b || strings.TrimPrefix(a1, "ephi:d1:org_a:")[9:] == strings.TrimPrefix(b, "ephi:d1:org_b:")[9:] {
		t.Errorf("another org's token of the same plaintext: %s vs %s", b, a1)
	}
	if err := opens(k, "org_a", a1, "+15551234567"); err != nil {
		t.Errorf("exact token: %v", err)
	}
	if _, err := k.Decrypt(context.Background(), "org_a", []byte(b)); !errors.Is(err, ErrOrgMismatch) {
		t.Errorf("org_b's token opened for org_a: %v", err)
	}
	// The same ciphertext relabelled as org_a's does not open.
	forged := "ephi:d1:org_a:" + strings.TrimPrefix(b, "ephi:d1:org_b:")
	if _, err := k.Decrypt(context.Background(), "org_a", []byte(forged)); !errors.Is(err, ErrDecrypt) {
		t.Errorf("org_b's ciphertext under org_a's name: %v", err)
	}
	// A randomized token relabelled as exact does not open either.
	rnd := sealAll(t, k, "org_a", "x")["x"]
	if _, err := k.Decrypt(context.Background(), "org_a", []byte(strings.Replace(rnd, ":v1:", ":d1:", 1))); !errors.Is(err, ErrDecrypt) {
		t.Errorf("randomized token read as exact: %v", err)
	}
	tk, err := ParseToken(a1)
	info, _ := k.Info("org_a")
	if err != nil || !tk.Exact || len(info.Exact) != 1 || tk.KeyID != info.Exact[0].ID || tk.String() != a1 {
		t.Errorf("ParseToken(%s) = %+v, %v; exact keys %v", a1, tk, err, info.Exact)
	}
}

// TestIndexWords: an index word is the prefix and chars lower-case base32
// characters; one word gives one index word within an org, another org
// another; the length is bounded.
func TestIndexWords(t *testing.T) {
	_, k := newTestKeyring(t, "org_a", "org_b")
	for _, chars := range []int{MinIndexChars, 8, MaxIndexChars} {
		w := indexWord(t, k, "org_a", "chest", chars)
		if !IsIndexWord(w, chars) || len(w) != len(IndexWordPrefix)+chars {
			t.Errorf("%d chars: %q", chars, w)
		}
		if again := indexWord(t, k, "org_a", "chest", chars); again != w {
			t.Errorf("one word, two index words: %q %q", w, again)
		}
	}
	long := indexWord(t, k, "org_a", "chest", MaxIndexChars)
	if short := indexWord(t, k, "org_a", "chest", 8); !strings.HasPrefix(long, short) {
		t.Errorf("a shorter index word is not a truncation: %q %q", short, long)
	}
	if indexWord(t, k, "org_a", "chest", 12) == indexWord(t, k, "org_a", "pain", 12) {
		t.Error("two words, one 60-bit index word")
	}
	if indexWord(t, k, "org_a", "chest", 12) == indexWord(t, k, "org_b", "chest", 12) {
		t.Error("two orgs, one index word")
	}
	for _, chars := range []int{0, 1, MaxIndexChars + 1} {
		if _, err := k.AppendIndexWord(nil, "org_a", []byte("chest"), chars); err == nil {
			t.Errorf("%d chars accepted", chars)
		}
	}
	for _, w := range []string{"w9abc", "w9ab8d", "W9abcd", "x9abcd", "w9abcde"} {
		if IsIndexWord(w, 4) {
			t.Errorf("IsIndexWord(%q, 4)", w)
		}
	}
	for _, w := range []string{"", "w", "w9"} {
		if IsIndexWord(w, len(w)-len(IndexWordPrefix)) {
			t.Errorf("IsIndexWord(%q)", w)
		}
	}
	if _, err := k.AppendIndexWord(nil, "org_x", []byte("chest"), 8); !errors.Is(err, ErrUnknownOrg) {
		t.Errorf("unknown org: %v", err)
	}
}

// TestRotateSearch: an org whose file predates search keys has none
// (ErrNoSearchKeys), RotateSearch makes them; rotating again gives new
// tokens and index words while old exact tokens still open, and leaves
// the data keys alone.
func TestRotateSearch(t *testing.T) {
	dir, _ := newTestKeyring(t, "org_b")
	p, _ := OpenLocal(dir)
	ctx := context.Background()
	// A file as written before search keys existed.
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	w, _ := p.WrapFor("org_a")
	data, err := wrapOrgFile(ctx, p, w, "org_a", h, []KeyInfo{{ID: primaryID(h), Created: now()}}, 1, nil)
	if err != nil || bytes.Contains(data, []byte(`"search"`)) {
		t.Fatalf("old-style file: %v\n%s", err, data)
	}
	os.MkdirAll(dir+"/orgs", 0o700)
	if err := os.WriteFile(orgPath(dir, "org_a"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	k := reopen(t, dir, p)
	rnd := sealAll(t, k, "org_a", "v")["v"]
	if _, err := k.AppendEncryptExact(ctx, nil, "org_a", []byte(`"v"`)); !errors.Is(err, ErrNoSearchKeys) {
		t.Errorf("exact without search keys: %v", err)
	}
	if _, err := k.AppendIndexWord(nil, "org_a", []byte("v"), 8); !errors.Is(err, ErrNoSearchKeys) {
		t.Errorf("index word without search keys: %v", err)
	}

	if made, err := RotateSearch(ctx, dir, "org_a", p); err != nil || !made {
		t.Fatalf("RotateSearch on a file without search keys: made %v, %v", made, err)
	}
	k = reopen(t, dir, p)
	oldTok, oldWord := exact(t, k, "org_a", `"v"`), indexWord(t, k, "org_a", "v", 8)
	if err := opens(k, "org_a", rnd, "v"); err != nil {
		t.Errorf("a data token after search keys were made: %v", err)
	}
	dataBefore, _ := k.Info("org_a")

	if made, err := RotateSearch(ctx, dir, "org_a", p); err != nil || made {
		t.Fatalf("RotateSearch again: made %v, %v", made, err)
	}
	k = reopen(t, dir, p)
	info, _ := k.Info("org_a")
	if len(info.Exact) != 2 || len(info.Words) != 2 || info.Exact[0].Superseded.IsZero() || info.Primary != dataBefore.Primary || len(info.Keys) != 1 {
		t.Errorf("after rotation: %+v", info)
	}
	if exact(t, k, "org_a", `"v"`) == oldTok || indexWord(t, k, "org_a", "v", 8) == oldWord {
		t.Error("rotation kept the exact token or the index word")
	}
	if err := opens(k, "org_a", oldTok, "v"); err != nil {
		t.Errorf("an exact token of the old key: %v", err)
	}
	// The old search keys retire like data keys; the primaries do not.
	for _, id := range []uint32{info.ExactPrimary, info.WordsPrimary} {
		if err := Retire(ctx, dir, "org_a", p, id); err == nil {
			t.Errorf("retired the primary search key %08x", id)
		}
	}
	if err := Retire(ctx, dir, "org_a", p, 0x01020304); err == nil {
		t.Error("retired a key the org does not have")
	}
	for _, ks := range [][]KeyStatus{info.Exact, info.Words} {
		if err := Retire(ctx, dir, "org_a", p, ks[0].ID); err != nil {
			t.Fatal(err)
		}
	}
	k = reopen(t, dir, p)
	if info, _ := k.Info("org_a"); len(info.Exact) != 1 || len(info.Words) != 1 || info.Primary != dataBefore.Primary {
		t.Errorf("after retiring the old search keys: %+v", info)
	}
	if _, err := k.Decrypt(ctx, "org_a", []byte(oldTok)); !errors.Is(err, ErrDecrypt) {
		t.Errorf("an exact token of a retired key: %v", err)
	}
	if err := opens(k, "org_a", rnd, "v"); err != nil {
		t.Errorf("a data token after search keys retired: %v", err)
	}
}

// TestSearchKeysetsBound: the search keysets are bound to their file. One
// copied from another org's file, or from an older generation of the same
// org, does not load; shredding the org takes them along.
func TestSearchKeysetsBound(t *testing.T) {
	dir, k := newTestKeyring(t, "org_a", "org_b")
	p, _ := OpenLocal(dir)
	ctx := context.Background()
	read := func(org string) map[string]json.RawMessage {
		raw, err := os.ReadFile(orgPath(dir, org))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]json.RawMessage
		json.Unmarshal(raw, &m)
		return m
	}
	write := func(org string, m map[string]json.RawMessage) {
		raw, _ := json.Marshal(m)
		os.WriteFile(orgPath(dir, org), raw, 0o600)
	}
	b := read("org_b")
	older := read("org_a")
	if _, err := Rotate(ctx, dir, "org_a", p); err != nil {
		t.Fatal(err)
	}
	current := read("org_a")
	for name, search := range map[string]json.RawMessage{"another org's": b["search"], "an older generation's": older["search"]} {
		m := read("org_a")
		m["search"] = search
		write("org_a", m)
		if _, err := Open(ctx, dir, p); err == nil {
			t.Errorf("org_a with %s search keysets opened", name)
		}
		write("org_a", current)
	}
	// Only the exact keyset of an older generation, sealed by the same
	// data keys, under today's metadata: its own binding refuses it.
	beforeSearch := read("org_a")
	if _, err := RotateSearch(ctx, dir, "org_a", p); err != nil {
		t.Fatal(err)
	}
	current = read("org_a")
	var oldSearch, curSearch map[string]json.RawMessage
	json.Unmarshal(beforeSearch["search"], &oldSearch)
	json.Unmarshal(current["search"], &curSearch)
	curSearch["exact"] = oldSearch["exact"]
	m := read("org_a")
	m["search"], _ = json.Marshal(curSearch)
	write("org_a", m)
	if _, err := Open(ctx, dir, p); err == nil {
		t.Error("org_a with an older generation's exact keyset opened")
	}
	write("org_a", current)
	// Without its search member, the file's metadata no longer matches.
	m = read("org_a")
	delete(m, "search")
	write("org_a", m)
	if _, err := Open(ctx, dir, p); err == nil {
		t.Error("org_a with its search keysets removed opened")
	}
	write("org_a", current)

	tok := exact(t, k, "org_b", `"v"`)
	if _, err := Shred(ctx, dir, "org_b", p); err != nil {
		t.Fatal(err)
	}
	k = reopen(t, dir, p)
	if _, err := k.Decrypt(ctx, "org_b", []byte(tok)); !errors.Is(err, ErrShredded) {
		t.Errorf("an exact token of a shredded org: %v", err)
	}
	if _, err := k.AppendIndexWord(nil, "org_b", []byte("v"), 8); !errors.Is(err, ErrShredded) {
		t.Errorf("index word of a shredded org: %v", err)
	}
}
