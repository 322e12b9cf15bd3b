package docs_test

import (
	"fmt"
	"go/parser"
	"go/token"
	"path"
	"regexp"
	"strings"
)

// reference is a path a text points at.
type reference struct {
	from   string // the file that points, by path from the root
	line   int
	target string // as written, with its #anchor if any
	// link: a Markdown link, relative to from's directory as a browser reads
	// it; otherwise a mention, which may also be relative to the root.
	link bool
}

func (r reference) String() string { return fmt.Sprintf("%s:%d: %s", r.from, r.line, r.target) }

// knownExts are the extensions that make a word with a slash a file name.
var knownExts = map[string]bool{
	".go": true, ".lua": true, ".sql": true, ".yaml": true, ".yml": true,
	".md": true, ".sh": true, ".js": true, ".json": true, ".mod": true,
}

var (
	// inlineLink is [text](target) or [text](target "title"); an image too.
	inlineLink = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]*)(?:\s+"[^"]*")?\)`)
	// definedLink is a reference-style link's definition: [label]: target.
	definedLink = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*(\S+)`)
	// wordSeparators split a line into the words a path may be.
	wordSeparators = regexp.MustCompile("[\\s`()\\[\\],;\"|]+")
	// placeholders mark a word as a pattern, a template or an address rather
	// than a path: .tmp/nemesis/<run>/, numberd:{p}:seg, $root/x.
	placeholders = regexp.MustCompile(`[<>*{}$…=@?%~\\]|://`)
)

// markdownRefs returns the links of a Markdown file and the paths its text
// mentions, in prose, code spans and code blocks alike.
func markdownRefs(from, text string, topDirs map[string]bool) []reference {
	var out []reference
	fenced := false
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			for _, m := range definedLink.FindAllStringSubmatch(line, -1) {
				out = appendLink(out, from, n, m[1])
			}
			for _, m := range inlineLink.FindAllStringSubmatch(line, -1) {
				out = appendLink(out, from, n, m[1])
			}
			// The link's text stays: it may mention a path itself.
			line = inlineLink.ReplaceAllStringFunc(line, func(s string) string {
				return s[:strings.LastIndex(s, "](")+1]
			})
		}
		out = append(out, mentions(from, n, line, topDirs)...)
	}
	return out
}

func appendLink(out []reference, from string, line int, target string) []reference {
	if target == "" || strings.Contains(target, ":") {
		return out // a URL, mailto: and the like: not the repository's
	}
	return append(out, reference{from: from, line: line, target: target, link: true})
}

// goCommentRefs returns the paths the comments of a Go file mention.
func goCommentRefs(from, src string, topDirs map[string]bool) ([]reference, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, from, src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var out []reference
	for _, group := range f.Comments {
		for _, c := range group.List {
			first := fset.Position(c.Pos()).Line
			for i, line := range strings.Split(c.Text, "\n") {
				out = append(out, mentions(from, first+i, line, topDirs)...)
			}
		}
	}
	return out, nil
}

// mentions returns the words of line that name a path of the repository, or
// look as though they do: a word with a slash and a known extension
// (scripts/bench.sh), a path from a top-level directory (internal/alloc/), one
// that climbs out of its directory with ../, and any Markdown file's name, as
// documents are named by their path from the root or the file that names them
// (docs/DESIGN.md, not its bare name, from the root).
func mentions(from string, n int, line string, topDirs map[string]bool) []reference {
	var out []reference
	for _, word := range wordSeparators.Split(line, -1) {
		if p, ok := pathWord(word, topDirs); ok {
			out = append(out, reference{from: from, line: n, target: p})
		}
	}
	return out
}

// pathWord returns word as the path it names, trimmed of the punctuation of
// the sentence around it, and whether it names one.
func pathWord(word string, topDirs map[string]bool) (string, bool) {
	word = strings.TrimLeft(word, "'‘“")
	word = strings.TrimSuffix(strings.TrimSuffix(word, "'s"), "’s")
	word = strings.TrimRight(word, ".:!'’”")
	if word == "" || strings.HasPrefix(word, "/") || strings.HasPrefix(word, "-") || placeholders.MatchString(word) {
		return "", false
	}
	p, _ := splitTarget(word)
	first, _, slash := strings.Cut(p, "/")
	ext := path.Ext(p)
	switch {
	case p == "":
		return "", false
	case strings.HasPrefix(p, "../"),
		slash && knownExts[ext],
		slash && topDirs[first],
		ext == ".md":
		return word, true
	}
	return "", false
}

// splitTarget returns the path a link or mention names, without "./" before it
// or "/" and a package pattern's "/..." after it, and its anchor.
func splitTarget(target string) (p, anchor string) {
	p, anchor, _ = strings.Cut(target, "#")
	p = strings.TrimPrefix(p, "./")
	p = strings.TrimSuffix(p, "/...")
	if p != "/" {
		p = strings.TrimSuffix(p, "/")
	}
	return p, anchor
}
