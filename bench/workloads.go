package main

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// The app's routes, as the upstream serves them and the policy names them.
const (
	convPath = "/api/v1/conversations/cv_1001"
	msgsPath = convPath + "/messages"
	docPath  = msgsPath + "/m_2001"
	listLen  = 50
	fieldLen = 200 // bytes of each PHI string value
)

// phiFields are the ten top-level string fields of a message document that
// the policy encrypts on the way in and decrypts on the way out.
var phiFields = []string{
	"subject", "body", "patient_name", "date_of_birth", "diagnosis",
	"medications", "allergies", "clinical_notes", "home_address", "insurance_member",
}

// workload is one kind of request, sent the same way to both proxies.
type workload struct {
	name   string
	method string
	path   string
	body   []byte // nil for GET
	h2     bool   // HTTP/2 with prior knowledge instead of HTTP/1.1
	open   bool   // also measured in the open-loop phase
}

func allWorkloads() []*workload {
	doc4K := document(4<<10, phiFields, fieldLen)
	return []*workload{
		{name: "passthrough", method: "GET", path: convPath, open: true},
		{name: "encrypt-10x200B", method: "POST", path: msgsPath, body: doc4K, open: true},
		{name: "decrypt-10x200B", method: "GET", path: docPath, open: true},
		{name: "list-50", method: "GET", path: msgsPath},
		{name: "encrypt-512B", method: "POST", path: msgsPath, body: document(512, phiFields[:2], 160)},
		{name: "encrypt-64KB", method: "POST", path: msgsPath, body: document(64<<10, phiFields, fieldLen)},
		{name: "passthrough-h2", method: "GET", path: convPath, h2: true},
		{name: "encrypt-10x200B-h2", method: "POST", path: msgsPath, body: doc4K, h2: true},
	}
}

// selectWorkloads keeps the workloads named in filter (all when empty).
func selectWorkloads(filter []string) ([]*workload, error) {
	all := allWorkloads()
	if len(filter) == 0 {
		return all, nil
	}
	var out []*workload
	var names []string
	for _, w := range all {
		names = append(names, w.name)
	}
	for _, name := range filter {
		found := false
		for _, w := range all {
			if w.name == name {
				out = append(out, w)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown workload %q (want some of %s)", name, strings.Join(names, ","))
		}
	}
	return out, nil
}

// filler is non-PHI text; it holds nothing phiguard reads as a token.
const filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. "

// text is prefix followed by filler, exactly n bytes long.
func text(prefix string, n int) string {
	s := prefix
	for len(s) < n {
		s += filler
	}
	return s[:n]
}

// phiText is the plaintext of a PHI field; distinct per field so a test can
// tell that each was decrypted.
func phiText(field string, n int) string {
	return text("PHI "+field+": patient reports ", n)
}

// document is a message of exactly size bytes: a few metadata fields, one
// string of valueLen bytes per PHI field, then non-PHI attributes as padding.
func document(size int, fields []string, valueLen int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"id":"m_2001","conversation_id":"cv_1001","sender_id":"u_042","channel":"sms","created_at":"2026-03-01T09:30:00Z"`)
	for _, f := range fields {
		fmt.Fprintf(&b, `,%q:%q`, f, phiText(f, valueLen))
	}
	const overhead = len(`,"attr_000":""`)
	for i := 0; ; i++ {
		room := size - b.Len() - 1 // the closing brace
		if room < overhead+1 {
			b.WriteString(strings.Repeat(" ", max(room, 0)))
			break
		}
		n := 240
		if room-overhead <= n+overhead {
			n = room - overhead // the last attribute takes the rest
		}
		fmt.Fprintf(&b, `,"attr_%03d":%s`, i, strconv.Quote(text("note ", n)))
	}
	b.WriteByte('}')
	return b.Bytes()
}

// listMessage is one message of the listed conversation: one PHI field.
func listMessage(i int) []byte {
	return fmt.Appendf(nil, `{"id":"m_%04d","conversation_id":"cv_1001","sender_id":"u_%03d","direction":"inbound","created_at":"2026-03-01T09:%02d:00Z","body":%q}`,
		3000+i, i%100, i%60, phiText(fmt.Sprintf("body %02d", i), fieldLen))
}
