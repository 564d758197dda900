package codec

import (
	"bytes"
	"io"
	"net/url"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/phiguard/phiguard/policy"
)

// DropJSON returns src, one JSON value, without the object members that
// a selector of sels picks (its last step names them), and counts[i] is
// how many selector i removed. Names are compared in any letter case:
// a vendor that reads "Data" as "data" must not get what "data" would
// have carried. The rest is re-encoded (its whitespace may change, its
// values do not). A body that is not exactly one well-formed JSON value,
// or holds duplicate names, is refused (ErrMalformed); no refusal's text
// holds a value from the body.
func DropJSON(src []byte, sels []policy.Selector) ([]byte, []int, error) {
	counts := make([]int, len(sels))
	dec := jsontext.NewDecoder(bytes.NewReader(src))
	var out bytes.Buffer
	out.Grow(len(src))
	enc := jsontext.NewEncoder(&out)
	d := dropper{dec: dec, enc: enc, sels: sels, counts: counts}
	start := make([]uint64, len(sels))
	for i := range start {
		start[i] = 1
	}
	if err := d.value(start, 0); err != nil {
		return nil, nil, err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, nil, malformed("data after the JSON value")
	}
	return bytes.TrimSuffix(out.Bytes(), []byte{'\n'}), counts, nil
}

type dropper struct {
	dec    *jsontext.Decoder
	enc    *jsontext.Encoder
	sels   []policy.Selector
	counts []int
}

// value copies one value whose selectors stand at states (bit j of
// states[i]: selector i has matched j steps), dropping picked members.
func (d *dropper) value(states []uint64, depth int) error {
	tok, err := d.dec.ReadToken()
	if err != nil {
		return jsonErr(err)
	}
	if err := d.enc.WriteToken(tok); err != nil {
		return jsonErr(err)
	}
	kind := tok.Kind()
	if kind != '{' && kind != '[' {
		return nil
	}
	if depth+1 > MaxDepth {
		return malformed("nesting deeper than %d levels", MaxDepth)
	}
	child := make([]uint64, len(states))
	for {
		switch d.dec.PeekKind() {
		case '}', ']':
			end, err := d.dec.ReadToken()
			if err != nil {
				return jsonErr(err)
			}
			return jsonErr(d.enc.WriteToken(end))
		case 0:
			_, err := d.dec.ReadToken()
			return jsonErr(err)
		}
		var name []byte
		if kind == '{' {
			nt, err := d.dec.ReadToken()
			if err != nil {
				return jsonErr(err)
			}
			name = []byte(nt.String())
			drop := -1
			for i, s := range d.sels {
				child[i] = step(s.Steps, states[i], name, true, true)
				if drop < 0 && child[i]&(1<<len(s.Steps)) != 0 {
					drop = i
				}
			}
			if drop >= 0 {
				d.counts[drop]++
				if err := d.dec.SkipValue(); err != nil {
					return jsonErr(err)
				}
				continue
			}
			if err := d.enc.WriteToken(nt); err != nil {
				return jsonErr(err)
			}
		} else {
			for i, s := range d.sels {
				child[i] = step(s.Steps, states[i], nil, false, true)
			}
		}
		if err := d.value(child, depth+1); err != nil {
			return err
		}
	}
}

// DropForm returns an application/x-www-form-urlencoded body without the
// fields a form selector of sels names under any reading of their name
// (RewriteForm's), in any letter case; counts[i] is how many selector i
// removed. Every other pair is copied as it is. Bodies RewriteForm finds
// malformed are refused the same way.
func DropForm(src []byte, sels []policy.Selector) ([]byte, []int, error) {
	counts := make([]int, len(sels))
	if bytes.IndexByte(src, ';') >= 0 {
		return nil, nil, malformed("';' in a form body")
	}
	out := make([]byte, 0, len(src))
	for pair := range bytes.SplitSeq(src, []byte{'&'}) {
		if len(pair) == 0 {
			continue
		}
		rawKey, _, _ := bytes.Cut(pair, []byte{'='})
		key, err := url.QueryUnescape(string(rawKey))
		if err != nil || !utf8.ValidString(key) {
			return nil, nil, malformed("invalid field name encoding in a form body")
		}
		if FormNameTooDeep(key) {
			return nil, nil, malformed("a form field name nests deeper than %d levels", MaxFormNameNesting)
		}
		if i := dropSelector(formNameReadings(key), sels); i >= 0 {
			counts[i]++
			continue
		}
		if len(out) > 0 {
			out = append(out, '&')
		}
		out = append(out, pair...)
	}
	return out, counts, nil
}

// dropSelector returns the first form selector that one of a field's
// readings names in any letter case, or -1.
func dropSelector(readings []string, sels []policy.Selector) int {
	for i, s := range sels {
		if !s.Form {
			continue
		}
		for _, k := range readings {
			if formNameIs(k, s, true) {
				return i
			}
		}
	}
	return -1
}
