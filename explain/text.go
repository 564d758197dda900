package explain

import (
	"fmt"
	"io"
	"strings"
)

// WriteText writes the explanation for people: the route, the decision,
// then each body with what every selector found, where, and what became
// of it. The layout is stable: tests compare it byte for byte.
func (e *Explanation) WriteText(w io.Writer) error {
	var b strings.Builder
	e.head(&b)
	if e.Request != nil {
		b.WriteString("\n")
		e.body(&b, "request", e.Request, true)
	}
	if e.Response != nil {
		b.WriteString("\n")
		e.body(&b, "answer", e.Response, false)
	}
	b.WriteString("\naudit:")
	if len(e.Audit) == 0 {
		b.WriteString(" no record (phiguard records the requests that touch PHI, and those it refuses)\n")
	} else {
		b.WriteString("\n")
		for _, r := range e.Audit {
			writeRecord(&b, r)
		}
	}
	if len(e.Notes) > 0 {
		b.WriteString("\nnotes:\n")
		for _, n := range e.Notes {
			b.WriteString("  - " + n + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

const labelWidth = 11

func line(b *strings.Builder, label, text string) {
	if label == "" {
		b.WriteString(strings.Repeat(" ", labelWidth) + text + "\n")
		return
	}
	fmt.Fprintf(b, "%-*s%s\n", labelWidth, label+":", text)
}

func (e *Explanation) head(b *strings.Builder) {
	if e.Direction == "egress" {
		fmt.Fprintf(b, "egress call: %s to %s\n", e.Method, e.Destination)
	} else {
		fmt.Fprintf(b, "ingress request: %s\n", e.Method)
	}
	if rt := e.Route; rt != nil {
		methods := "every method"
		if len(rt.Methods) > 0 {
			methods = strings.Join(rt.Methods, ", ")
		}
		text := fmt.Sprintf("%s (%s): %s %s", rt.Name, rt.Ref, methods, rt.Path)
		if rt.BAA != nil {
			text += fmt.Sprintf(", baa: %t", *rt.BAA)
		}
		if rt.Auth == "none" {
			text += ", auth: none"
		}
		line(b, "route", text)
		for _, p := range rt.Params {
			line(b, "", fmt.Sprintf("path parameter {%s}: %s", p.Name, p.Type))
		}
		if rt.Deny != "" {
			line(b, "", "deny: "+rt.Deny)
		}
	} else {
		line(b, "route", "none")
	}
	for _, n := range e.NoRoute {
		line(b, "", n)
	}
	e.headCaller(b)
	d := e.Decision
	if d.Allowed {
		to := "the app is called"
		if e.Direction == "egress" {
			to = "the vendor is called"
		}
		line(b, "decision", "allowed: "+to)
		return
	}
	line(b, "decision", fmt.Sprintf("refused at the %s: %d %s", d.Stage, d.Status, d.Code))
	line(b, "", d.Reason)
}

// headCaller writes whom the request was explained for, the org it acts
// for, and whether the caller reads plaintext.
func (e *Explanation) headCaller(b *strings.Builder) {
	if c := e.Caller; c != nil {
		role, amr := c.Role, "none"
		if role == "" {
			role = "none"
		}
		if len(c.AMR) > 0 {
			amr = strings.Join(c.AMR, ",")
		}
		line(b, "caller", fmt.Sprintf("org %s, user %s, role %s, amr %s (a stand-in: explain verifies no token)", c.Org, c.User, role, amr))
	}
	if e.Org != "" {
		org := e.Org
		if e.Route != nil && e.Route.OrgFrom != "" {
			org += " (from " + e.Route.OrgFrom + ")"
		}
		line(b, "org", org)
	}
	if rt := e.Route; rt != nil && rt.Reader != nil {
		readers := "every caller of the org"
		if len(rt.Readers) > 0 {
			readers = strings.Join(rt.Readers, ", ")
		}
		who := "the caller"
		if e.Caller != nil && e.Caller.Role != "" {
			who = "role " + e.Caller.Role
		}
		if *rt.Reader {
			readers += ": " + who + " reads plaintext"
		} else {
			readers += ": " + who + " does not (it sees the mask, and may not search)"
		}
		line(b, "readers", readers)
	}
}

func (e *Explanation) body(b *strings.Builder, title string, body *Body, request bool) {
	fmt.Fprintf(b, "%s: %s\n", title, strings.Join(e.facts(body, request), ", "))
	if body.Problem != "" {
		b.WriteString("  " + body.Problem + "\n")
	}
	width, typeWidth := 0, 0
	for _, s := range body.Selectors {
		for _, l := range s.Found {
			width, typeWidth = max(width, len(l.Path)), max(typeWidth, len(l.Type))
		}
	}
	for _, l := range body.Untaken {
		width, typeWidth = max(width, len(l.Path)), max(typeWidth, len(l.Type))
	}
	loc := func(l Location) {
		text := fmt.Sprintf("    %-*s  %-*s  %s", width, l.Path, typeWidth, l.Type, l.Outcome)
		b.WriteString(strings.TrimRight(text, " ") + "\n")
	}
	for _, s := range body.Selectors {
		ref := s.List
		if !strings.HasPrefix(s.List, "consent") {
			ref = fmt.Sprintf("%s[%d]", s.List, s.Index)
		}
		fmt.Fprintf(b, "  %s %s: %s\n", ref, s.Selector, s.Does)
		for _, l := range s.Found {
			loc(l)
		}
		if len(s.Found) == 0 && s.Refused == "" {
			b.WriteString("    found nothing\n")
		}
		if s.Refused != "" {
			b.WriteString("    refuses the body: " + s.Refused + "\n")
		}
		for _, h := range s.Hints {
			b.WriteString("    hint: " + h + "\n")
		}
	}
	if len(body.Untaken) > 0 {
		b.WriteString("  not taken by any selector" + e.untakenGoes(request) + ":\n")
		for _, l := range body.Untaken {
			loc(l)
		}
	}
}

// facts say what a body is and what became of it.
func (e *Explanation) facts(body *Body, request bool) []string {
	var facts []string
	if body.Status != 0 {
		facts = append(facts, fmt.Sprint(body.Status))
	}
	switch {
	case body.Bytes == 0:
		facts = append(facts, "no body")
	case body.ContentType != "":
		facts = append(facts, body.ContentType, fmt.Sprintf("%d bytes", body.Bytes))
	default:
		facts = append(facts, "no Content-Type", fmt.Sprintf("%d bytes", body.Bytes))
	}
	refusedBefore := !e.Decision.Allowed && e.Decision.Stage != "response body"
	switch {
	case request && refusedBefore && e.Direction == "egress":
		return append(facts, "not sent: the call is refused")
	case request && refusedBefore:
		return append(facts, "not forwarded: the request is refused")
	case body.Rewritten:
		return append(facts, "rewritten by phiguard")
	case !request && !e.Decision.Allowed:
		return append(facts, "refused: it is not passed on")
	case len(body.Selectors) == 0:
		return append(facts, "no selector applies: passed on as sent")
	}
	return append(facts, "passed on as sent")
}

// untakenGoes says where the values no selector took go.
func (e *Explanation) untakenGoes(request bool) string {
	switch {
	case !e.Decision.Allowed:
		return ""
	case request && e.Direction == "egress":
		return " (the vendor gets them as the app wrote them)"
	case request:
		return " (the app gets them as sent)"
	case e.Direction == "egress":
		return " (the app gets them as the vendor sent them)"
	}
	return " (the client gets them as the app sent them)"
}

func writeRecord(b *strings.Builder, r Record) {
	what := r.Decision
	if r.Phase != "" {
		what = r.Phase + " " + what
	}
	if r.Status != 0 {
		what += fmt.Sprintf(" %d", r.Status)
	}
	fmt.Fprintf(b, "  %s\n", what)
	for _, f := range r.Fields {
		text := fmt.Sprintf("%s %s ×%d", f.Action, f.Path, f.Count)
		if f.Reason != "" {
			text += " (" + f.Reason + ")"
		}
		b.WriteString("    " + text + "\n")
	}
	if len(r.Recorded) > 0 {
		b.WriteString("    recorded values: " + strings.Join(r.Recorded, ", ") + "\n")
	}
	if r.Reason != "" {
		b.WriteString("    reason: " + r.Reason + "\n")
	}
}
