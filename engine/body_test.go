package engine

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadLimited(t *testing.T) {
	long := strings.Repeat("x", 5000)
	cases := []struct {
		name        string
		body        string
		size, limit int64
		err         error
	}{
		{"declared length", long, 5000, 10000, nil},
		{"unknown length grows", long, -1, 10000, nil},
		{"declared shorter than sent", long, 10, 10000, nil},
		{"declared longer than sent", "abc", 5000, 10000, nil},
		{"empty", "", 0, 10, nil},
		{"exactly the limit", long, -1, 5000, nil},
		{"one past the limit", long, -1, 4999, errTooLarge},
		{"declared past the limit", "abc", 20000, 10000, errTooLarge},
		{"declared within, sent past the limit", long, 100, 1000, errTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// One byte per Read: the loop must not depend on big reads.
			got, err := readLimited(iotest.OneByteReader(strings.NewReader(c.body)), c.size, c.limit)
			if !errors.Is(err, c.err) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			if err == nil && string(got) != c.body {
				t.Fatalf("read %d bytes, want %d", len(got), len(c.body))
			}
		})
	}
	t.Run("read error", func(t *testing.T) {
		r := io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(errors.New("reset")))
		if _, err := readLimited(r, -1, 100); err != errReadBody {
			t.Fatalf("err %v, want errReadBody", err)
		}
	})
	t.Run("declared length reads into one buffer", func(t *testing.T) {
		body := bytes.Repeat([]byte("y"), 4096)
		rd := bytes.NewReader(body)
		allocs := testing.AllocsPerRun(20, func() {
			rd.Reset(body)
			if _, err := readLimited(rd, int64(len(body)), 1<<20); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 1 {
			t.Fatalf("%v allocations, want 1", allocs)
		}
	})
}

// TestBodyBuffers: a lent buffer has room for what was asked; a returned
// one is wiped before anyone else can get it, since bodies hold PHI.
func TestBodyBuffers(t *testing.T) {
	for _, n := range []int{0, 1, 4 << 10, 4<<10 + 1, 37 << 10, 256 << 10, 256<<10 + 1, 300 << 10} {
		b := getBuffer(n)
		if len(b) != 0 || cap(b) < n {
			t.Errorf("getBuffer(%d): len %d cap %d", n, len(b), cap(b))
		}
		// A pooled buffer is at most twice the size asked for (wiping it
		// costs in proportion); above the classes, exactly that size.
		if n > 4<<10 && cap(b) > 2*n {
			t.Errorf("getBuffer(%d): cap %d, more than twice the size", n, cap(b))
		}
		if n > maxPooled && cap(b) != n {
			t.Errorf("getBuffer(%d): cap %d, want exactly %d", n, cap(b), n)
		}
	}
	b := getBuffer(100)
	b = append(b, "canary-phi-value"...)
	putBuffer(b)
	// The pooled array is cleared in place: b still views it.
	if bytes.Contains(b[:cap(b)], []byte("canary")) {
		t.Error("a returned buffer still holds its body")
	}
	// A buffer of no size class is not pooled, but it is wiped all the same.
	odd := append(make([]byte, 0, 1000), "canary-phi-value"...)
	putBuffer(odd)
	if bytes.Contains(odd[:cap(odd)], []byte("canary")) {
		t.Error("a buffer of no size class still holds its body")
	}

	// Lending and giving back allocates nothing once the pools are warm.
	putBuffer(getBuffer(4 << 10))
	if n := testing.AllocsPerRun(100, func() { putBuffer(getBuffer(4 << 10)) }); n != 0 {
		t.Errorf("%v allocations per lend and give back, want 0", n)
	}
}

// TestDeclaredLengthIsNotTrusted: a request that declares a huge body and
// sends one byte makes phiguard reserve no more than the largest pooled
// buffer, not the declared length.
func TestDeclaredLengthIsNotTrusted(t *testing.T) {
	b, err := readLimited(strings.NewReader("x"), 10<<20, 10<<20)
	if err != nil {
		t.Fatal(err)
	}
	if cap(b) > maxPooled {
		t.Errorf("reserved %d bytes for a body declared at 10 MiB that sent 1", cap(b))
	}
	// A body of that size still reads in full, growing as it arrives.
	big := strings.Repeat("y", 3<<20)
	got, err := readLimited(strings.NewReader(big), int64(len(big)), 10<<20)
	if err != nil || len(got) != len(big) {
		t.Fatalf("read %d bytes, %v; want %d", len(got), err, len(big))
	}
}

// TestMediaKind: what a response's Content-Type is read as; the usual
// spellings read without parsing agree with the parser.
func TestMediaKind(t *testing.T) {
	for _, c := range []struct {
		values []string
		kind   bodyKind
		ok     bool
	}{
		{[]string{"application/json"}, bodyJSON, true},
		{[]string{"application/json; charset=utf-8"}, bodyJSON, true},
		{[]string{"Application/JSON; Charset=\"UTF-8\""}, bodyJSON, true},
		{[]string{"application/problem+json"}, bodyJSON, true},
		{[]string{"application/x-www-form-urlencoded"}, bodyForm, true},
		{[]string{"application/json; charset=latin1"}, 0, false},
		{[]string{"application/json;"}, bodyJSON, true},
		{[]string{"application/json; charset"}, 0, false},
		{[]string{"text/plain"}, 0, false},
		{[]string{""}, 0, false},
		{nil, 0, false},
		{[]string{"application/json", "application/json"}, 0, false},
	} {
		kind, _, err := mediaKind(http.Header{"Content-Type": c.values})
		if (err == nil) != c.ok || kind != c.kind {
			t.Errorf("%q: kind %v, err %v; want kind %v, ok %v", c.values, kind, err, c.kind, c.ok)
		}
	}
	for _, v := range []string{"application/json", "application/json; charset=utf-8", "application/json; charset=UTF-8",
		"application/json;charset=utf-8", "application/json;charset=UTF-8", "application/x-www-form-urlencoded"} {
		kind, mt, ok := commonMediaType(v)
		pkind, pmt, _, err := readMediaType(v)
		if !ok || err != nil || kind != pkind || mt != pmt {
			t.Errorf("%q: read as %v %q, parsed as %v %q (%v)", v, kind, mt, pkind, pmt, err)
		}
	}
}
