package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/search"
)

// keyOp runs one keys subcommand that changes keys: it prints what it did
// and writes an audit event.
type keyOp struct {
	ctx   context.Context
	k     *policy.Keys
	orgs  []policy.Org
	p     keys.Provider
	out   io.Writer
	trail *cliTrail
	// search is the policy's search settings (reencrypt's index words);
	// nil without a policy.
	search *policy.SearchSettings
}

func (o keyOp) create(org string) error {
	w, err := keys.CreateOrg(o.ctx, o.k.Keyring, org, o.p)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.out, "created keys for organization %s, wrapped by %s\n", org, w)
	return o.trail.record("key_create", "org", org, "wrap", w.String())
}

func (o keyOp) rotate(org string) error {
	id, err := keys.Rotate(o.ctx, o.k.Keyring, org, o.p)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.out, "organization %s: new primary key %08x; older keys keep decrypting\n", org, id)
	return o.trail.record("key_rotate", "org", org, "key", fmt.Sprintf("%08x", id))
}

func (o keyOp) rotateSearch(org string) error {
	made, err := keys.RotateSearch(o.ctx, o.k.Keyring, org, o.p)
	if err != nil {
		return err
	}
	if made {
		fmt.Fprintf(o.out, "organization %s: search keys made (exact-match and index); its searchable fields now work\n", org)
		return o.trail.record("key_search_create", "org", org)
	}
	fmt.Fprintf(o.out, "organization %s: new primary search keys; re-index the stored searchable values with keys reencrypt so that lookups and searches find them\n", org)
	return o.trail.record("key_search_rotate", "org", org)
}

func (o keyOp) rewrap(org, to string) error {
	w := keys.Wrap{Provider: keys.ProviderAWSKMS, Key: to}
	if to == keys.ProviderLocal {
		lp := localProvider(o.p)
		if lp == nil {
			return usageError{"-to local needs the master key (keys.master_key or $PHIGUARD_MASTER_KEY; with aws-kms, keys.accept_local)"}
		}
		w, _ = lp.WrapFor(org)
	}
	from, err := keys.Rewrap(o.ctx, o.k.Keyring, org, o.p, w)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.out, "organization %s: keyset wrapped by %s (was %s); keys and data unchanged\n", org, w, from)
	return o.trail.record("key_rewrap", "org", org, "from", from.String(), "to", w.String())
}

func (o keyOp) retire(org, key, confirm string, scans []string, unscanned bool) error {
	if confirm != key {
		return usageError{"-confirm must repeat -key: retiring a key makes every token it sealed unreadable"}
	}
	id, err := strconv.ParseUint(key, 16, 32)
	if err != nil {
		return usageError{fmt.Sprintf("-key %q: want the 8 hex digits keys list shows", key)}
	}
	if len(scans) == 0 && !unscanned {
		return usageError{"keys retire needs proof that no stored token needs the key: -scan FILE (an export of the stored data, after reencrypt), or -unscanned"}
	}
	if len(scans) > 0 && unscanned {
		return usageError{"-scan and -unscanned exclude each other"}
	}
	key = fmt.Sprintf("%08x", id)
	evidence := "unscanned"
	if len(scans) > 0 {
		var read int64
		for _, name := range scans {
			found, n, err := countTag(name, keys.TokenTag(org, uint32(id)), keys.ExactTokenTag(org, uint32(id)))
			if err != nil {
				return err
			}
			if found > 0 {
				return fmt.Errorf("keys retire: %s holds %d token(s) of key %s; run keys reencrypt over the stored data and write it back, then scan again", name, found, key)
			}
			read += n
		}
		evidence = fmt.Sprintf("%d file(s), %d bytes, no token of the key", len(scans), read)
	}
	if err := o.trail.intent("key_retire", "org", org, "key", key, "evidence", evidence); err != nil {
		return err
	}
	if err := keys.Retire(o.ctx, o.k.Keyring, org, o.p, uint32(id)); err != nil {
		return err
	}
	fmt.Fprintf(o.out, "organization %s: key %s destroyed (evidence: %s); the tokens it sealed never open again\n", org, key, evidence)
	return o.trail.record("key_retire", "org", org, "key", key, "evidence", evidence)
}

// tagForms are the ways an export may write a token's tag: as it is, its
// colons percent-encoded (a URL, a form) or JSON-escaped.
func tagForms(tag string) []string {
	return []string{tag,
		strings.ReplaceAll(tag, ":", "%3A"), strings.ReplaceAll(tag, ":", "%3a"),
		strings.ReplaceAll(tag, ":", `\u003a`), strings.ReplaceAll(tag, ":", `\u003A`)}
}

// countTag counts the occurrences of the tags, in any of their forms (tagForms),
// in the file name (- for stdin), reading it in chunks, and says how many
// bytes it read.
func countTag(name string, tags ...string) (found, read int64, err error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return 0, 0, fmt.Errorf("keys retire -scan: %w", err)
		}
		defer f.Close()
		r = f
	}
	var needles [][]byte
	longest := 0
	for _, tag := range tags {
		for _, t := range tagForms(tag) {
			needles = append(needles, []byte(t))
			longest = max(longest, len(t))
		}
	}
	buf := make([]byte, 0, 256<<10)
	kept := 0 // bytes at buf's start already searched
	for {
		n, err := r.Read(buf[len(buf):cap(buf)])
		read += int64(n)
		buf = buf[:len(buf)+n]
		for _, nd := range needles {
			// Count the occurrences that end past what was searched before.
			for i := 0; ; {
				j := bytes.Index(buf[i:], nd)
				if j < 0 {
					break
				}
				if i+j+len(nd) > kept {
					found++
				}
				i += j + 1
			}
		}
		// Keep the last longest-1 bytes: a tag may straddle two reads.
		if keep := longest - 1; len(buf) > keep {
			buf = buf[:copy(buf, buf[len(buf)-keep:])]
		}
		kept = len(buf)
		if errors.Is(err, io.EOF) {
			return found, read, nil
		}
		if err != nil {
			return 0, read, fmt.Errorf("keys retire -scan %s: %w", name, err)
		}
	}
}

func (o keyOp) expire(only string) error {
	done := 0
	for _, org := range o.orgs {
		if only != "" && org.ID != only || org.RotateEvery == 0 && org.Retain == 0 {
			continue
		}
		if err := o.trail.intent("key_expire", "org", org.ID); err != nil {
			return err
		}
		got, err := keys.Expire(o.ctx, o.k.Keyring, org.ID, o.p, org.RotateEvery, org.Retain)
		if err != nil {
			return err
		}
		done++
		var retired []string
		for _, id := range got.Retired {
			retired = append(retired, fmt.Sprintf("%08x", id))
		}
		rotated := "none"
		if got.Rotated != 0 {
			rotated = fmt.Sprintf("%08x", got.Rotated)
		}
		fmt.Fprintf(o.out, "organization %s: new primary %s; destroyed %d key(s) past retention %s\n", org.ID, rotated, len(retired), strings.Join(retired, " "))
		if err := o.trail.record("key_expire", "org", org.ID, "rotated", rotated, "retired", strings.Join(retired, " ")); err != nil {
			return err
		}
	}
	if done == 0 {
		return errors.New("no organization has rotate_every or retain in the policy (or -org names none that has)")
	}
	return nil
}

func (o keyOp) shred(org, confirm string, deleteKMS bool, days int) error {
	if confirm != org {
		return usageError{"-confirm must repeat -org: shredding makes every token of the organization unreadable, for good"}
	}
	own := ""
	if deleteKMS {
		var err error
		if own, err = o.ownDeletableKey(org, days); err != nil {
			return err
		}
	}
	if err := o.trail.intent("key_shred", "org", org); err != nil {
		return err
	}
	w, err := keys.Shred(o.ctx, o.k.Keyring, org, o.p)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.out, "organization %s: keys destroyed (were wrapped by %s); its tokens show the mask with reason key_shredded\n", org, w)
	if w.Provider == keys.ProviderLocal || own == "" {
		fmt.Fprintln(o.out, "copies of the keyset file (backups, Secret history) still open with the wrapping key; for shredding that holds against them, give an org its own KMS key and use -delete-kms-key")
	}
	attrs := []string{"org", org, "wrap", w.String()}
	if own != "" {
		when, err := kmsProvider(o.p).ScheduleDeletion(o.ctx, own, int32(days))
		if err != nil {
			o.trail.record("key_shred", append(attrs, "kms_key_deletion", "failed")...)
			return fmt.Errorf("keys destroyed, but the KMS key's deletion was not scheduled (schedule it in KMS): %w", err)
		}
		fmt.Fprintf(o.out, "KMS key %s is scheduled for deletion on %s\n", own, when.UTC().Format("2006-01-02"))
		attrs = append(attrs, "kms_key_deletion", when.UTC().Format("2006-01-02T15:04:05Z"))
	}
	return o.trail.record("key_shred", attrs...)
}

// ownDeletableKey checks, before anything is destroyed, that org has a
// KMS key of its own that wraps its keyset alone and that KMS can delete
// by name: the key the policy gives it, which is the one its keyset file
// names, no alias, and not the shared key.
func (o keyOp) ownDeletableKey(org string, days int) (string, error) {
	kp := kmsProvider(o.p)
	own, ok := "", false
	if kp != nil {
		own, ok = kp.OwnKey(org)
	}
	switch {
	case !ok:
		return "", usageError{"-delete-kms-key needs the org's own kms_key (orgs[].kms_key) and keys.aws: a shared key wraps other orgs too"}
	case strings.HasPrefix(own, "alias/") || strings.Contains(own, ":alias/"):
		return "", usageError{"-delete-kms-key needs the org's kms_key as a key ARN or id: KMS deletes keys, not aliases"}
	case o.k.AWS != nil && own == o.k.AWS.KMSKey:
		return "", usageError{"the org's kms_key is the shared key"}
	case days < 7 || days > 30:
		return "", usageError{"-pending-days: want 7 to 30"}
	}
	w, err := keys.WrapOf(o.k.Keyring, org)
	if err != nil {
		return "", err
	}
	if w.Provider != keys.ProviderAWSKMS || w.Key != own {
		return "", fmt.Errorf("org %s's keyset is wrapped by %s, not its kms_key %s: rewrap it first, or shred without -delete-kms-key", org, w, own)
	}
	return own, nil
}

// rotateMaster makes a new local master key in the file newPath and
// rewraps every keyset of the current master key under it. The data keys
// and tokens do not change.
func (o keyOp) rotateMaster(newPath string) error {
	old := localProvider(o.p)
	if old == nil {
		return usageError{"rotate-master needs the current master key (keys.master_key or $PHIGUARD_MASTER_KEY)"}
	}
	if err := o.trail.intent("key_rotate_master"); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(newPath), 0o700); err != nil {
		return err
	}
	if err := keys.InitLocalFile(newPath); err != nil {
		return err
	}
	fresh, err := keys.OpenLocalFile(newPath)
	if err != nil {
		return err
	}
	to, _ := fresh.WrapFor("")
	both := keys.Providers{o.p, fresh}
	names, err := filepath.Glob(filepath.Join(o.k.Keyring, "orgs", "*.json"))
	if err != nil {
		return err
	}
	moved := 0
	for _, name := range names {
		org := strings.TrimSuffix(filepath.Base(name), ".json")
		w, err := keys.WrapOf(o.k.Keyring, org)
		if errors.Is(err, keys.ErrShredded) || err == nil && w.Provider != keys.ProviderLocal {
			continue
		}
		if err != nil {
			return fmt.Errorf("%w (%d keysets moved to the new master key before it)", err, moved)
		}
		if _, err := keys.Rewrap(o.ctx, o.k.Keyring, org, both, to); err != nil {
			return fmt.Errorf("%w (%d keysets moved to the new master key before it)", err, moved)
		}
		moved++
	}
	fmt.Fprintf(o.out, "new master key %s (%s); %d keysets rewrapped under it. Point keys.master_key (or $PHIGUARD_MASTER_KEY) at it, deliver the keyring, then destroy the old master key\n", newPath, to.Key, moved)
	return o.trail.record("key_rotate_master", "to", to.Key, "keysets", strconv.Itoa(moved))
}

// localProvider finds the master-key provider in p.
func localProvider(p keys.Provider) *keys.LocalProvider {
	switch x := p.(type) {
	case *keys.LocalProvider:
		return x
	case notForOrgs:
		return localProvider(x.Provider)
	case keys.Providers:
		for _, q := range x {
			if lp := localProvider(q); lp != nil {
				return lp
			}
		}
	}
	return nil
}

func kmsProvider(p keys.Provider) *keys.KMSProvider {
	if ps, ok := p.(keys.Providers); ok {
		for _, x := range ps {
			if kp, ok := x.(*keys.KMSProvider); ok {
				return kp
			}
		}
	}
	kp, _ := p.(*keys.KMSProvider)
	return kp
}

// reencrypt copies JSON values (a document, or JSON lines) from in to
// o.out, with every phiguard token sealed again under its org's primary.
// Each value is written once it is complete: on bad input, the values
// before it are written and the error names only the byte offset (a JSON
// error would quote member names, which can be PHI).
func (o keyOp) reencrypt(in io.Reader, report io.Writer) error {
	ring, err := keys.Open(o.ctx, o.k.Keyring, o.p)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(o.out)
	defer bw.Flush()
	dec := jsontext.NewDecoder(bufio.NewReader(in), jsontext.AllowDuplicateNames(true))
	var value bytes.Buffer // the value being copied
	enc := jsontext.NewEncoder(&value, jsontext.Multiline(false))
	var rewritten, current, kept, values int
	for {
		tok, err := dec.ReadToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			bw.Flush()
			fmt.Fprintf(report, "reencrypt: stopped after %d values\n", values)
			return fmt.Errorf("reencrypt: the input at byte %d is not JSON; the %d values before it were written", dec.InputOffset(), values)
		}
		if tok.Kind() == '"' && keys.LooksLikeToken(tok.String()) {
			s := tok.String()
			switch next, err := reseal(o.ctx, ring, s, o.search); {
			case errors.Is(err, errIndexNeedsPolicy):
				bw.Flush()
				return err
			case err != nil:
				kept++
			case next == s:
				current++
			default:
				rewritten++
				tok = jsontext.String(next)
			}
		}
		if err := enc.WriteToken(tok); err != nil {
			return err
		}
		if dec.StackDepth() == 0 {
			values++
			if _, err := bw.Write(value.Bytes()); err != nil {
				return err
			}
			value.Reset()
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(report, "reencrypt: %d values; %d tokens sealed again under their org's primary key (index words made again), %d already as they would be, %d left as they were (shredded, retired or unknown keys)\n", values, rewritten, current, kept)
	return o.trail.record("key_reencrypt", "rewritten", strconv.Itoa(rewritten), "current", strconv.Itoa(current), "kept", strconv.Itoa(kept))
}

// errIndexNeedsPolicy: index words are made with the policy's search
// settings, which a run with -keyring alone does not have.
var errIndexNeedsPolicy = usageError{"the input holds searchable values (a token followed by index words): making their index words again needs the policy's search settings; run keys reencrypt with -config"}

// reseal opens tok and seals it again under its org's primary key (the
// exact-match primary for an exact-match token); a token already under
// the primary comes back unchanged. A searchable: words value (a token,
// then index words) gets its index words made again from its plaintext
// under the org's primary index key, with the policy's search settings.
func reseal(ctx context.Context, ring *keys.Keyring, s string, ss *policy.SearchSettings) (string, error) {
	tok, words, indexed := strings.Cut(s, " ")
	if indexed {
		for w := range strings.SplitSeq(words, " ") {
			if !keys.IsIndexWord(w, len(w)-len(keys.IndexWordPrefix)) {
				return "", keys.ErrNotToken
			}
		}
	}
	t, err := keys.ParseToken(tok)
	if err != nil {
		return "", err
	}
	info, ok := ring.Info(t.Org)
	if !ok {
		return "", keys.ErrUnknownOrg
	}
	primary := info.Primary
	if t.Exact {
		primary = info.ExactPrimary
	}
	var pt []byte
	if t.KeyID != primary || indexed {
		if pt, err = ring.Decrypt(ctx, t.Org, []byte(tok)); err != nil {
			return "", err
		}
		defer clear(pt)
	}
	out := []byte(tok)
	switch {
	case t.KeyID == primary:
	case t.Exact:
		out, err = ring.AppendEncryptExact(ctx, nil, t.Org, pt)
	default:
		out, err = ring.AppendEncrypt(ctx, nil, t.Org, pt)
	}
	if err != nil || !indexed {
		return string(out), err
	}
	if ss == nil {
		return "", errIndexNeedsPolicy
	}
	text, err := jsontext.AppendUnquote(nil, pt)
	if err != nil {
		return "", keys.ErrDecrypt // index words follow string values only
	}
	defer clear(text)
	out, _, err = search.AppendIndex(out, string(text), ss.Words, func(dst, w []byte) ([]byte, error) {
		return ring.AppendIndexWord(dst, t.Org, w, ss.IndexChars)
	})
	return string(out), err
}

// cliTrail is where a keys command writes its audit events.
type cliTrail struct {
	a       *audit.Auditor
	closers []func() error
}

// cliAuditor writes to the policy's audit sinks, or, without a policy,
// to audit.jsonl in keyring k's folder.
func cliAuditor(k *policy.Keys, pol *policy.Policy, stderr io.Writer) (*cliTrail, error) {
	var specs []policy.Sink
	failClosed := true
	if pol != nil {
		specs, failClosed = pol.File.Audit.Sinks, *pol.File.Audit.FailClosed
	} else {
		specs = []policy.Sink{{Type: "file", Path: filepath.Join(k.Keyring, "audit.jsonl")}}
	}
	for _, s := range specs {
		if s.Type == "file" {
			if err := os.MkdirAll(filepath.Dir(s.Path), 0o700); err != nil {
				return nil, err
			}
		}
	}
	// A command's stdout is its output (reencrypt's data): records for a
	// stdout sink go to stderr instead.
	sinks, closers, err := openSinks(specs, stderr, stderr)
	if err != nil {
		return nil, err
	}
	t := &cliTrail{closers: closers}
	if pol != nil {
		if t.a, err = newAuditor(pol.File.Audit, nil, sinks); err != nil {
			t.close()
			return nil, err
		}
		return t, nil
	}
	t.a = audit.NewAuditor(nil, failClosed, sinks...)
	return t, nil
}

// record writes event, with who ran the command.
func (t *cliTrail) record(event string, attrs ...string) error {
	operator := "unknown"
	if u, err := user.Current(); err == nil {
		operator = u.Username
	}
	attrs = append(attrs, "operator", operator)
	if err := t.a.Event(context.Background(), event, attrs...); err != nil {
		return fmt.Errorf("done, but the audit record was not written: %w", err)
	}
	return nil
}

// intent records, before a destructive change, that it is about to be
// made: if the trail cannot take the record, the change is not made.
func (t *cliTrail) intent(event string, attrs ...string) error {
	if err := t.record(event, append(attrs, "result", "starting")...); err != nil {
		return fmt.Errorf("not done: the audit trail did not take the record of the intent: %w", err)
	}
	return nil
}

func (t *cliTrail) close() {
	if t.a != nil {
		t.a.Close()
	}
	for _, c := range t.closers {
		c()
	}
}
