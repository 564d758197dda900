package policy

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a policy file, with where it is.
type Problem struct {
	File string
	Line int
	Col  int
	// Path is the key path, e.g. routes[3].encrypt_request[1].
	Path string
	Msg  string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
		if p.Col > 0 {
			fmt.Fprintf(&b, ":%d", p.Col)
		}
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// LoadError carries every problem found in a policy, in file order.
type LoadError struct {
	Problems []Problem
}

func (e *LoadError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// position is where a value sits in the file.
type position struct{ line, col int }

// problems collects errors by key path and places each at the nearest
// position the decoder recorded for that path or one of its parents.
type problems struct {
	file       string
	pos        map[string]position
	list       []Problem
	suppressed []string
}

func (ps *problems) at(line, col int, path, format string, args ...any) {
	ps.list = append(ps.list, Problem{File: ps.file, Line: line, Col: col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// suppressDecoded marks the paths that have problems so far: later
// (validation) problems about them, their parents or their children would
// only echo the first.
func (ps *problems) suppressDecoded() {
	for _, p := range ps.list {
		ps.suppressed = append(ps.suppressed, p.Path)
	}
}

func (ps *problems) isSuppressed(path string) bool {
	for _, s := range ps.suppressed {
		if s == path || related(s, path) || related(path, s) {
			return true
		}
	}
	return false
}

// related reports whether child lies below parent in the key path.
func related(parent, child string) bool {
	if parent == "" {
		return false
	}
	return strings.HasPrefix(child, parent) && len(child) > len(parent) && (child[len(parent)] == '.' || child[len(parent)] == '[')
}

// add records a problem at path, located at the path's own value if the
// file had one, or else at the closest parent that it had.
func (ps *problems) add(path, format string, args ...any) {
	if ps.isSuppressed(path) {
		return
	}
	p := ps.locate(path)
	ps.at(p.line, p.col, path, format, args...)
}

func (ps *problems) locate(path string) position {
	for q := path; ; {
		if p, ok := ps.pos[q]; ok {
			return p
		}
		i := strings.LastIndexAny(q, ".[")
		if i < 0 {
			return ps.pos[""]
		}
		q = q[:i]
	}
}

func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	sort.SliceStable(ps.list, func(i, j int) bool {
		a, b := ps.list[i], ps.list[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	return &LoadError{Problems: ps.list}
}
