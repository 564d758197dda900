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
	// Route is the name of the route (or egress route) Path lies in, if
	// it has one: "routes[6]" alone says little in a long policy.
	Route string
	Msg   string
	// Warning: the policy loads, but probably does not do what its
	// author meant.
	Warning bool
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
	if p.Warning {
		b.WriteString("warning: ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		if p.Route != "" {
			fmt.Fprintf(&b, " (route %s)", p.Route)
		}
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
	warnings   []Problem
	suppressed []string
	// routes names the routes by their key path (routes[3],
	// egress_routes[0]), for Problem.Route.
	routes map[string]string
}

func (ps *problems) at(line, col int, path, format string, args ...any) {
	ps.list = append(ps.list, Problem{File: ps.file, Line: line, Col: col, Path: path, Route: ps.routeOf(path), Msg: fmt.Sprintf(format, args...)})
}

// warn records a warning at path, located as add locates problems.
func (ps *problems) warn(path, format string, args ...any) {
	p := ps.locate(path)
	ps.warnings = append(ps.warnings, Problem{File: ps.file, Line: p.line, Col: p.col, Path: path, Route: ps.routeOf(path), Msg: fmt.Sprintf(format, args...), Warning: true})
}

// routeOf names the route path lies in; "" for none, or one without a name.
func (ps *problems) routeOf(path string) string {
	end := strings.IndexByte(path, ']')
	if end < 0 || !strings.HasPrefix(path, "routes[") && !strings.HasPrefix(path, "egress_routes[") {
		return ""
	}
	return ps.routes[path[:end+1]]
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
	inFileOrder(ps.list)
	return &LoadError{Problems: ps.list}
}

func inFileOrder(list []Problem) {
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}
