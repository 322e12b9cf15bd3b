// Package docs_test checks that what numberd's Markdown files and Go comments
// point at is in the repository: every relative link, with its anchor, and
// every path they mention. A file moved or renamed leaves no stale pointer
// behind, and nothing points at files that live elsewhere: a document beside
// the repository, or an API document where the API's contract is
// api/openapi.yaml.
package docs_test

import "testing"

func TestReferencesResolve(t *testing.T) {
	r := mustRepo(t)
	top := r.topDirs()
	var refs []reference
	for _, name := range r.withExt(".md") {
		refs = append(refs, markdownRefs(name, r.read(t, name), top)...)
	}
	for _, name := range r.withExt(".go") {
		got, err := goCommentRefs(name, r.read(t, name), top)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, got...)
	}
	for _, ref := range refs {
		if err := r.resolve(t, ref); err != nil {
			t.Errorf("%v: %v", ref, err)
		}
	}
	t.Logf("%d references checked", len(refs))
}
