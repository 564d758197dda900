package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/engine/codec"
	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/refusal"
)

// SealRequest reads the request body of a route with field actions (size
// is its declared length, -1 when unknown), judges it (one meaning, no
// override fields, no planted tokens) and returns it with the selected
// fields replaced by tokens. A route that only decrypts still has its
// request body judged. h is updated to frame the new body: no
// Content-Encoding, its Content-Length. Call it only for a request that
// has a body, and once.
//
// The sealed body is lent from a pool: it is valid until x.Close, or, if
// readers were opened on it with x.SealedBody, until x.Close and the last
// of them is closed.
func (x *Exchange) SealRequest(ctx context.Context, h http.Header, body io.Reader, size int64) ([]byte, error) {
	route := x.decision.Route
	kind, why, err := requestMediaKind(h)
	if err != nil {
		return nil, refusal.New(refusal.UnsupportedMedia, "%s", why)
	}
	gz, ok := contentEncoding(h)
	if !ok {
		return nil, refusal.New(refusal.UnsupportedEncoding, "only gzip or no Content-Encoding is read")
	}
	if len(x.plan.reqSels) > 0 {
		switch {
		case kind == bodyJSON && x.plan.encJSON.Empty():
			return nil, refusal.New(refusal.UnsupportedMedia, "this route takes form bodies")
		case kind == bodyForm && !x.plan.encForm:
			return nil, refusal.New(refusal.UnsupportedMedia, "this route takes JSON bodies")
		}
	}
	in := x.e.pol.File.Ingress
	raw, err := readBody(body, size, gz, in.MaxBodyBytes)
	if err != nil {
		return nil, err
	}
	if sig := x.plan.sig; sig != nil {
		// Before anything is rewritten: the sender signed what it sent.
		if err := sig.verify(h, x.rawPath, x.rawQuery, kind == bodyForm, raw, x.e.now()); err != nil {
			putBuffer(raw)
			return nil, err
		}
		x.verified = true
	}
	if route.ConsentFrom != nil {
		if err := x.readKeywords(ctx, kind, raw); err != nil {
			putBuffer(raw)
			return nil, err
		}
	}
	var out []byte
	if kind == bodyJSON {
		out, err = x.sealJSON(ctx, raw)
	} else {
		out, err = x.sealForm(ctx, raw)
	}
	putBuffer(raw) // the sealed body is a copy
	if err != nil {
		return nil, err
	}
	x.sealed = newLent(out)
	if int64(len(out)) > in.MaxResponseBytes {
		// The app would store what phiguard could never hand back.
		return nil, errTooLargeSealed
	}
	x.out.Request.Checked = len(route.EncryptRequest) > 0
	frame(h, out)
	if sig := x.plan.sig; sig != nil {
		// The sender's signature no longer matches the rewritten body: the
		// app checks phiguard's instead.
		h.Del("X-Twilio-Signature")
		if sig.cfg.Header != "" {
			h.Del(sig.cfg.Header)
		}
		h.Set(policy.ResignHeader, sig.sign(x.method, x.path.escaped, x.query, out, x.e.now()))
	}
	return out, nil
}

// SealedBody opens a reader on the body SealRequest returned, for a
// client that sends it (and may reopen it to retry) on its own schedule:
// the body stays valid until the reader is closed, even past x.Close.
// Before SealRequest succeeded, or after the body was given back, the
// reader fails.
func (x *Exchange) SealedBody() io.ReadCloser {
	if x.sealed == nil {
		return &lentReader{done: true}
	}
	return x.sealed.open()
}

func (x *Exchange) sealJSON(ctx context.Context, body []byte) ([]byte, error) {
	out, err := codec.AppendRewriteJSON(getBuffer(len(body)+len(body)/2), body, x.plan.encJSON, func(dst []byte, sel int, v jsontext.Value) ([]byte, error) {
		return x.sealValue(ctx, dst, sel, v)
	}, nil)
	if err != nil {
		putBuffer(out)
		return nil, err
	}
	return out, nil
}

func (x *Exchange) sealForm(ctx context.Context, body []byte) ([]byte, error) {
	out, _, err := codec.RewriteForm(body, x.plan.reqSels, func(sel int, v string) (string, error) {
		if sel >= x.plan.recStart {
			return v, nil // recorded fields are JSON selectors: never a form's
		}
		if sel >= x.plan.nEnc {
			return x.termFor(ctx, &x.plan.reqSels[sel], v)
		}
		pt, err := jsontext.AppendQuote(nil, v)
		if err != nil {
			return "", err
		}
		sealed, err := x.sealValue(ctx, nil, sel, pt)
		if err != nil {
			return "", err
		}
		// A JSON string of a token and index words: nothing in it is escaped.
		return string(sealed[1 : len(sealed)-1]), nil
	}, x.plan.refusedForm...)
	return out, err
}

// sealFailure is keyFailure, except for an org whose keys were shredded:
// its PHI is refused for good (403), not for a while.
func (e *Engine) sealFailure(err error) error {
	if errors.Is(err, keys.ErrShredded) {
		return errShredded
	}
	if errors.Is(err, keys.ErrNoSearchKeys) {
		e.log.Error("key operation failed", "err", err)
		return errNoSearchKeys
	}
	return e.keyFailure(err)
}

// keyFailure logs a key error (never a value) and returns the 503 refusal.
func (e *Engine) keyFailure(err error) error {
	e.log.Error("key operation failed", "err", err)
	return errKeys
}

// OpenResponse takes the app's answer on a route with field actions: it
// notes the app's status and, on a route that decrypts, reads the body
// (size is its declared length, -1 when unknown; nil for none) and returns
// it with every selected value decrypted for a reader or masked, and
// forbids caching the answer. replaced is false when the body is passed on
// as it is. h is updated to frame a new body, which is valid until x.Close:
// its buffer is then wiped and reused. Any failure is a refusal: the app's
// body is never passed on unread.
func (x *Exchange) OpenResponse(ctx context.Context, status int, h http.Header, body io.Reader, size int64) (out []byte, replaced bool, err error) {
	x.rec.UpstreamStatus = status
	if !x.plan.decrypts {
		return nil, false, nil
	}
	// Plaintext PHI, now or on the next call: no cache may keep it.
	forbidCaching(h)
	if body == nil || size == 0 || x.method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified {
		return nil, false, nil
	}
	raw, err := x.readAnswer(h, body, size, errUpstreamBody, errUpstreamLarge)
	if err != nil {
		return nil, false, err
	}
	defer putBuffer(raw) // what is returned is a copy
	if len(raw) == 0 {
		frame(h, nil)
		return []byte{}, true, nil
	}
	if kind, _, err := mediaKind(h); err != nil || kind != bodyJSON {
		return nil, false, errUpstreamBody
	}
	route := x.decision.Route
	// Tokens open to shorter plaintexts: the answer is rarely longer than
	// what the app sent, and if masks make it so, it grows wiped.
	out, err = codec.AppendRewriteJSON(getBuffer(len(raw)+len(raw)/8), raw, x.plan.dec, func(dst []byte, sel int, v jsontext.Value) ([]byte, error) {
		if sel >= x.plan.nDec {
			if status >= 200 && status < 300 {
				x.recordValue(route.RecordResponseNames[sel-x.plan.nDec], v)
			}
			return codec.AppendWiping(dst, v), nil
		}
		x.out.Response.found(sel)
		return x.reveal(ctx, dst, route.DecryptResponse[sel].Text, v)
	}, nil)
	if err != nil {
		putBuffer(out)
	} else {
		x.opened = out
	}
	if errors.Is(err, refusal.BadRequest) {
		return nil, false, errUpstreamBody // the app's JSON, not the client's
	}
	if err != nil {
		return nil, false, err
	}
	frame(h, out)
	x.out.Response.Checked = status >= 200 && status < 300
	return out, true, nil
}

// readAnswer reads an answer's body, decoded, within max_response_bytes;
// it fails with unreadable, or tooLarge past the bound.
func (x *Exchange) readAnswer(h http.Header, body io.Reader, size int64, unreadable, tooLarge error) ([]byte, error) {
	gz, ok := contentEncoding(h)
	if !ok {
		return nil, unreadable
	}
	raw, err := readBody(body, size, gz, x.e.pol.File.Ingress.MaxResponseBytes)
	switch {
	case errors.Is(err, errTooLarge):
		return nil, tooLarge
	case err != nil:
		return nil, unreadable
	}
	return raw, nil
}

// OpenedBody returns a reader over the body OpenResponse returned, for an
// adapter that hands the answer on as a stream. It is valid until x.Close
// and is used on the goroutine that closes x; it allocates nothing.
func (x *Exchange) OpenedBody() io.ReadCloser {
	x.openedBody.x = x
	x.openedBody.r.Reset(x.opened)
	return &x.openedBody
}

// openedReader reads an exchange's opened body, and fails once the
// exchange is closed rather than read a buffer back in the pool.
type openedReader struct {
	x *Exchange
	r bytes.Reader
}

func (o *openedReader) Read(p []byte) (int, error) {
	if o.x.closed {
		return 0, errBodyReleased
	}
	return o.r.Read(p)
}

func (o *openedReader) Close() error { return nil }

// frame sets the headers of a body phiguard rewrote: decoded (no
// Content-Encoding) and of a known length.
func frame(h http.Header, body []byte) {
	h.Del("Content-Encoding")
	h.Del("Transfer-Encoding")
	h.Set("Content-Length", strconv.Itoa(len(body)))
}

// Reasons a value is masked, as audit records name them (Field.Reason).
const (
	MaskNotReader   = "the caller's role may not read it"
	MaskOtherOrg    = "token of another organization"
	MaskUndecodable = "token does not decrypt"
	MaskNotToken    = "value is not a phiguard token"
	// MaskShredded: the organization's keys were destroyed on purpose
	// (crypto-shredding, retention); the value is gone for good.
	MaskShredded = "key_shredded"
)

// reveal appends to dst what the caller may see of one selected response
// value: the plaintext for a reader, the mask for everyone else and for
// every token that does not open.
func (x *Exchange) reveal(ctx context.Context, dst []byte, path string, v jsontext.Value) ([]byte, error) {
	mask := x.e.mask
	if v.Kind() == 'n' {
		return codec.AppendWiping(dst, v), nil // null holds nothing to protect
	}
	if !x.decision.Reader {
		x.rec.AddField(audit.ActionMask, path, MaskNotReader, 1)
		return codec.AppendWiping(dst, mask), nil
	}
	tok, ok := tokenText(v)
	if ok {
		tok, ok = indexedToken(tok)
	}
	if !ok {
		// Stored before phiguard or by a path it does not cover: never decrypted, never trusted.
		x.rec.AddField(audit.ActionMask, path, MaskNotToken, 1)
		return codec.AppendWiping(dst, mask), nil
	}
	pt, err := x.e.keys.Decrypt(ctx, x.decision.Org, tok)
	switch {
	case err == nil && validJSON(pt):
		x.rec.AddField(audit.ActionDecrypt, path, "", 1)
		return codec.AppendWiping(dst, pt), nil
	case errors.Is(err, keys.ErrOrgMismatch):
		x.rec.AddField(audit.ActionMask, path, MaskOtherOrg, 1)
		return codec.AppendWiping(dst, mask), nil
	case errors.Is(err, keys.ErrShredded):
		x.rec.AddField(audit.ActionMask, path, MaskShredded, 1)
		return codec.AppendWiping(dst, mask), nil
	case err == nil, errors.Is(err, keys.ErrDecrypt), errors.Is(err, keys.ErrNotToken):
		x.rec.AddField(audit.ActionMask, path, MaskUndecodable, 1)
		return codec.AppendWiping(dst, mask), nil
	default:
		return dst, x.e.keyFailure(err)
	}
}

// validJSON reports whether pt is one complete JSON value. What a token
// opens to was a valid value when phiguard sealed it; the check keeps a
// bad key or a bug from ever splicing broken JSON into an answer. The
// common case, a string without escapes, is checked in one pass: between
// its quotes, no quote, backslash or control character, and valid UTF-8.
func validJSON(pt []byte) bool {
	if len(pt) >= 2 && pt[0] == '"' && pt[len(pt)-1] == '"' {
		if s := pt[1 : len(pt)-1]; plainString(s) {
			return utf8.Valid(s)
		}
	}
	return jsontext.Value(pt).IsValid()
}

// plainString reports whether s has no byte below 0x20, no '"' and no
// '\\', eight bytes at a time: for each word, a byte below 0x20 (or equal
// to 0 after xor-ing with '"' or '\\') sets its high bit in the mask.
func plainString(s []byte) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	for len(s) >= 8 {
		x := binary.LittleEndian.Uint64(s)
		q, b := x^('"'*ones), x^('\\'*ones)
		if ((x-0x20*ones)&^x|(q-ones)&^q|(b-ones)&^b)&highs != 0 {
			return false
		}
		s = s[8:]
	}
	for _, c := range s {
		if c < 0x20 || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// tokenText returns the text of a JSON string that holds a token. A token
// needs no escapes, so the quoted bytes are used as they are unless the
// app escaped some character.
func tokenText(v jsontext.Value) ([]byte, bool) {
	if v.Kind() != '"' {
		return nil, false
	}
	s := []byte(v[1 : len(v)-1])
	if bytes.IndexByte(s, '\\') >= 0 {
		u, err := jsontext.AppendUnquote(nil, v)
		if err != nil {
			return nil, false
		}
		s = u
	}
	return s, keys.LooksLikeToken(s)
}
