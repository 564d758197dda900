package policy

import (
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/phiguard/phiguard/search"
)

// Defaults of the search section.
const (
	DefaultIndexChars    = 8
	DefaultMinWordLength = 2
	DefaultMaxWords      = 256
	DefaultPhoneRegion   = "US"
	maxWordsLimit        = 4096
)

// SearchSettings is the compiled search section.
type SearchSettings struct {
	// Words says which words of a text become index words.
	Words search.WordOptions
	// IndexChars is the length of an index word after its prefix.
	IndexChars int
	// PhoneRegion reads phone numbers without a country code.
	PhoneRegion string
}

// HasQuerySearch reports whether any route takes search terms in its
// query string.
func (p *Policy) HasQuerySearch() bool { return len(p.querySearch) > 0 }

// SearchParamsAt returns the query search parameters of every route whose
// path takes path, whatever its methods: a request to path that another
// route (or none) takes must not carry them, for nothing would rewrite
// their plaintext terms.
func (p *Policy) SearchParamsAt(path string) []string {
	if len(p.querySearch) == 0 {
		return nil
	}
	var segBuf [16]string
	segs := appendSegments(segBuf[:0], path)
	var out []string
	for _, r := range p.querySearch {
		if r.Path.matches(segs, p.File.CaseSensitivePaths) {
			for _, s := range r.SearchRequest {
				if s.Query {
					out = append(out, s.QueryName)
				}
			}
		}
	}
	return out
}

func (p *Policy) compileSearch(ps *problems) {
	s := &p.File.Search
	if s.IndexChars == 0 {
		s.IndexChars = DefaultIndexChars
	}
	if s.IndexChars < 2 || s.IndexChars > 16 {
		ps.add("search.index_chars", "want 2 to 16 characters (10 to 80 bits), got %d", s.IndexChars)
	}
	if s.MinWordLength == 0 {
		s.MinWordLength = DefaultMinWordLength
	}
	if s.MinWordLength < 1 {
		ps.add("search.min_word_length", "want 1 or more, got %d", s.MinWordLength)
	}
	if s.MaxWords == 0 {
		s.MaxWords = DefaultMaxWords
	}
	if s.MaxWords < 1 || s.MaxWords > maxWordsLimit {
		ps.add("search.max_words", "want 1 to %d, got %d", maxWordsLimit, s.MaxWords)
	}
	if s.PhoneRegion == "" {
		s.PhoneRegion = DefaultPhoneRegion
	}
	if _, err := search.Normalize(search.Phone, "+1 555 123 4567", s.PhoneRegion); err != nil || len(s.PhoneRegion) != 2 || strings.ToUpper(s.PhoneRegion) != s.PhoneRegion {
		ps.add("search.phone_region", "want an ISO 3166 country code in capitals (US, GB, DE), got %q", s.PhoneRegion)
	}
	stop := map[string]bool{}
	switch s.StopWords {
	case "", "english":
		s.StopWords = "english"
		for _, w := range search.EnglishStopWords() {
			stop[w] = true
		}
	case "none":
	default:
		ps.add("search.stop_words", "want english or none, got %q (list your own under extra_stop_words)", s.StopWords)
	}
	for i, w := range s.ExtraStopWords {
		words := search.Words(w, search.WordOptions{})
		if len(words) != 1 {
			ps.add(fmt.Sprintf("search.extra_stop_words[%d]", i), "want one word, got %q", w)
			continue
		}
		stop[words[0]] = true
	}
	p.Search = SearchSettings{
		Words:       search.WordOptions{MinLength: s.MinWordLength, StopWords: stop, MaxWords: s.MaxWords},
		IndexChars:  s.IndexChars,
		PhoneRegion: s.PhoneRegion,
	}
}

// compileFields compiles encrypt_request (terms false) or search_request
// (terms true).
func (pol *Policy) compileFields(ps *problems, path string, written []Field, terms bool) []Selector {
	fields, from, setOf := pol.expandFieldSets(ps, path, written)
	if len(fields) > MaxSelectors {
		ps.add(path, "%d selectors; at most %d per list (split the route)", len(fields), MaxSelectors)
		return nil
	}
	var out []Selector
	seen := map[string]string{} // selector → the set it came from, or ""
	for j, f := range fields {
		p := fmt.Sprintf("%s[%d]", path, from[j])
		if f.Field == "" {
			ps.add(p, "field is required: the selector")
			continue
		}
		var s Selector
		if name, ok := strings.CutPrefix(f.Field, "query:"); ok {
			if !terms {
				ps.add(p, "query parameters are never stored encrypted: a value the app stores travels in the body (query: selectors belong under search_request)")
				continue
			}
			if name == "" || strings.ContainsAny(name, "&=;") {
				ps.add(p, "query selector %q needs a parameter name without '&', '=' or ';'", f.Field)
				continue
			}
			s = Selector{Text: f.Field, Query: true, QueryName: name}
		} else {
			var err error
			if s, err = ParseSelector(f.Field); err != nil {
				ps.add(p, "%v", err)
				continue
			}
		}
		if set, dup := seen[f.Field]; dup {
			switch {
			case set != "" && setOf[j] != "" && set != setOf[j]:
				ps.add(p, "selector %q is in field sets %s and %s", f.Field, set, setOf[j])
			case set != "" || setOf[j] != "":
				ps.add(p, "selector %q is listed twice (once through field set %s)", f.Field, set+setOf[j])
			default:
				ps.add(p, "selector %q is listed twice", f.Field)
			}
			continue
		}
		seen[f.Field] = setOf[j]
		if s.FormPrefix && (terms || f.Searchable != "") {
			ps.add(p, "%q selects every field its name begins; a search term or a searchable value must name one field", f.Field)
			continue
		}
		s.Search, s.Normalize, s.Join = f.Searchable, f.Normalize, f.Join
		switch f.Searchable {
		case "":
			if terms {
				ps.add(p+".searchable", "a search term must say what it is turned into: exact or words (as its field is stored)")
				continue
			}
		case SearchExact, SearchWords:
		default:
			ps.add(p+".searchable", "want exact or words, got %q", f.Searchable)
			continue
		}
		if f.Normalize != "" {
			if f.Searchable != SearchExact {
				ps.add(p+".normalize", "normalize applies to searchable: exact")
				continue
			}
			if !slices.Contains(search.Normalizations(), f.Normalize) {
				ps.add(p+".normalize", "want one of %s, got %q", strings.Join(search.Normalizations(), ", "), f.Normalize)
				continue
			}
		}
		if f.Join != "" {
			if !terms || f.Searchable != SearchWords {
				ps.add(p+".join", "join applies to search_request terms with searchable: words")
				continue
			}
			if len(f.Join) > 16 || strings.ContainsFunc(f.Join, unicode.IsControl) {
				ps.add(p+".join", "want up to 16 characters without control characters, got %q", f.Join)
				continue
			}
		}
		if terms && f.Searchable == SearchWords && s.Join == "" {
			s.Join = " "
		}
		s.at = p
		out = append(out, s)
	}
	return out
}
