package docs_test

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"testing"
)

var (
	errOutside = errors.New("it lies outside the repository")
	errMissing = errors.New("no such file or directory in the repository")
)

// resolve returns nil if ref names a file or directory of the repository, and
// a heading of it if ref has an anchor and names a Markdown file. A link is
// read from its file's directory (from the root if it starts with "/"); a
// mention from there or from the root.
func (r *repo) resolve(tb testing.TB, ref reference) error {
	p, anchor := splitTarget(ref.target)
	var candidates []string
	switch {
	case p == "":
		candidates = []string{ref.from}
	case strings.HasPrefix(p, "/"):
		candidates = []string{path.Clean(strings.TrimPrefix(p, "/"))}
	default:
		candidates = []string{path.Join(path.Dir(ref.from), p)}
		if !ref.link && !strings.HasPrefix(p, "../") {
			candidates = append(candidates, path.Clean(p))
		}
	}
	for _, c := range candidates {
		if c == ".." || strings.HasPrefix(c, "../") {
			return errOutside
		}
		if !r.has(c) {
			continue
		}
		// Anchors of other files (#L10 of a Go file) are the viewer's.
		if anchor == "" || path.Ext(c) != ".md" || r.anchors(tb, c)[anchor] {
			return nil
		}
		return fmt.Errorf("%s has no heading for #%s", c, anchor)
	}
	return errMissing
}

var (
	heading      = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)
	notInASlug   = regexp.MustCompile(`[^\p{L}\p{N}\s_-]`)
	spacesInSlug = regexp.MustCompile(`\s`)
)

// anchors returns the anchors a Markdown viewer gives the headings of name, as
// GitHub makes them: lower case, punctuation dropped, spaces turned into
// hyphens, and -1, -2 … after a repeated one.
func (r *repo) anchors(tb testing.TB, name string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	fenced := false
	for _, line := range strings.Split(r.read(tb, name), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
		}
		m := heading.FindStringSubmatch(line)
		if fenced || m == nil {
			continue
		}
		slug := strings.ToLower(strings.ReplaceAll(m[1], "`", ""))
		slug = spacesInSlug.ReplaceAllString(notInASlug.ReplaceAllString(slug, ""), "-")
		if k := seen[slug]; k > 0 {
			out[fmt.Sprintf("%s-%d", slug, k)] = true
		} else {
			out[slug] = true
		}
		seen[slug]++
	}
	return out
}
