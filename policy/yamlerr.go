package policy

import (
	"bytes"
	"strings"
)

// yamlSyntax places a YAML syntax error. yaml.v3 reports the line where
// the enclosing block or flow began, without a column, so an indentation
// slip twenty lines into a route is reported at its "routes:". From the
// message and the text, find the line that breaks, its column, and a hint.
func yamlSyntax(data []byte, line int, msg string) (int, int, string) {
	lines := strings.Split(string(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))), "\n")
	text := func(n int) string {
		if n < 1 || n > len(lines) {
			return ""
		}
		return lines[n-1]
	}
	for n := 1; n <= len(lines); n++ {
		lead := text(n)[:len(text(n))-len(strings.TrimLeft(text(n), " \t"))]
		if i := strings.IndexByte(lead, '\t'); i >= 0 {
			return n, i + 1, "YAML indents with spaces only: replace the tab"
		}
	}
	switch {
	case strings.Contains(msg, "mapping values are not allowed"):
		l := text(line)
		first := strings.Index(l, ": ")
		if second := strings.Index(l[first+2:], ": "); first >= 0 && second >= 0 {
			return line, first + 2 + second + 1, "a value that holds \": \" needs quotes"
		}
		return line, firstColumn(l), "a value that holds \": \" needs quotes, or this line is indented under a value"
	case strings.Contains(msg, "did not find expected key"), strings.Contains(msg, "did not find expected '-' indicator"),
		strings.Contains(msg, "block mapping"), strings.Contains(msg, "block sequence"):
		if n, col := badIndent(lines, line); n > 0 {
			return n, col, "this line lines up with no enclosing key: keys of one mapping start in one column, and a list's items each start with \"- \" in the list's column"
		}
	case strings.Contains(msg, "expected ',' or '}'"), strings.Contains(msg, "expected ',' or ']'"):
		// The parser names the line before the opening at times.
		for _, n := range []int{line, line + 1} {
			if col := strings.LastIndexAny(text(n), "{["); col >= 0 {
				return n, col + 1, "a { or [ opened here is not closed on its line, or a value in it needs quotes"
			}
		}
	case strings.Contains(msg, "end of stream"), strings.Contains(msg, "unexpected end"):
		return line, firstColumn(text(line)), "a quote opened here is not closed"
	}
	return line, firstColumn(text(line)), ""
}

func firstColumn(l string) int {
	return len(l) - len(strings.TrimLeft(l, " ")) + 1
}

// badIndent finds the first line from start on whose indentation fits no
// open block: a dedent to a column no enclosing key or item began at, or
// a line in a list's column that is not an item. It returns 0 when every
// line fits.
func badIndent(lines []string, start int) (int, int) {
	type level struct {
		col int
		seq bool // the level's lines are "- " items
	}
	var stack []level
	for n := 1; n <= len(lines); n++ {
		l := lines[n-1]
		trimmed := strings.TrimLeft(l, " ")
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		col := len(l) - len(trimmed)
		item := strings.HasPrefix(trimmed, "- ") || trimmed == "-"
		for len(stack) > 0 && stack[len(stack)-1].col > col {
			stack = stack[:len(stack)-1]
		}
		switch {
		case len(stack) == 0 || stack[len(stack)-1].col < col:
			if len(stack) > 0 && n >= start && !opensBlock(lines, n) {
				// Deeper than the line above, which opened nothing.
				if prev := prevLine(lines, n); prev > 0 && !opensBlock(lines, prev) && !strings.HasPrefix(strings.TrimLeft(lines[prev-1], " "), "- ") {
					return n, col + 1
				}
			}
			stack = append(stack, level{col: col, seq: item})
		case stack[len(stack)-1].seq != item && n >= start:
			return n, col + 1
		}
		if len(stack) > 0 && stack[len(stack)-1].col == col && n >= start && col > 0 {
			// The column is open; fine.
		}
		if item {
			// An item's content begins after "- ": its keys line up there.
			stack = append(stack, level{col: col + 2})
		}
	}
	return 0, 0
}

// opensBlock reports whether line n ends with a key whose value follows
// on the next lines ("key:").
func opensBlock(lines []string, n int) bool {
	l := strings.TrimRight(lines[n-1], " ")
	if i := strings.Index(l, " #"); i >= 0 {
		l = strings.TrimRight(l[:i], " ")
	}
	return strings.HasSuffix(l, ":") || strings.HasSuffix(l, "|") || strings.HasSuffix(l, ">") || strings.HasSuffix(l, "-")
}

func prevLine(lines []string, n int) int {
	for m := n - 1; m >= 1; m-- {
		t := strings.TrimSpace(lines[m-1])
		if t != "" && !strings.HasPrefix(t, "#") {
			return m
		}
	}
	return 0
}
