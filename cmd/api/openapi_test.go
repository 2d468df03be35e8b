package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/hybridrt/hybridrt/docs"
)

// TestOpenAPIMatchesRoutes checks that docs/openapi.yaml describes exactly
// the routes the router serves, and that every error response it describes
// is application/problem+json, as web.Problem sends.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc, err := parseYAMLTree(docs.OpenAPI)
	if err != nil {
		t.Fatalf("docs/openapi.yaml does not parse: %v", err)
	}
	if got := doc.child("openapi").scalar(); got != "3.1.0" {
		t.Errorf("openapi = %q, want %q", got, "3.1.0")
	}
	paths := doc.child("paths")
	if paths == nil || len(paths.children) == 0 {
		t.Fatal("docs/openapi.yaml has no paths")
	}

	// What the document describes: path → methods, and each operation's checks.
	documented := map[string]map[string]bool{}
	for _, p := range paths.children {
		if !strings.HasPrefix(p.key, "/") {
			t.Errorf("paths key %q (line %d) does not start with /", p.key, p.line)
			continue
		}
		for _, op := range p.children {
			method, ok := operationMethods[op.key]
			if !ok {
				continue // summary, description, parameters, servers
			}
			if documented[p.key] == nil {
				documented[p.key] = map[string]bool{}
			}
			documented[p.key][method] = true
			checkResponses(t, doc, method+" "+p.key, op)
		}
	}

	svc, err := newServices(testConfig(), nil, slog.New(slog.DiscardHandler)) // nothing connects at construction
	if err != nil {
		t.Fatal(err)
	}
	mux, ok := NewServer(slog.New(slog.DiscardHandler), testConfig(), svc).(*chi.Mux)
	if !ok {
		t.Fatal("NewServer did not return a *chi.Mux")
	}
	served := map[string]map[string]bool{}
	err = chi.Walk(mux, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if strings.HasPrefix(route, "/console") || strings.HasPrefix(route, "/sdk/") || strings.HasPrefix(route, "/examples/") {
			return nil // the console's pages, the SDK and the examples are files and HTML, not the JSON API
		}
		if method == http.MethodOptions {
			return nil // CORS preflight, answered by the CORS middleware
		}
		route = strings.TrimSuffix(route, "/*")
		if route == "" {
			route = "/"
		}
		if served[route] == nil {
			served[route] = map[string]bool{}
		}
		served[route][method] = true
		return nil
	})
	if err != nil {
		t.Fatalf("chi.Walk: %v", err)
	}

	for path, methods := range served {
		if anyMethod(methods) {
			// Mounted with Handle (such as /metrics' promhttp handler): it
			// answers every method, and the document describes the GET that
			// clients use.
			if !documented[path][http.MethodGet] {
				t.Errorf("router serves %s (any method), document: %v; want GET %s documented", path, sortedKeys(documented[path]), path)
			}
			continue
		}
		for method := range methods {
			if !documented[path][method] {
				t.Errorf("router serves %s %s; the document does not describe it", method, path)
			}
		}
	}
	for path, methods := range documented {
		if path == "/openapi.yaml" && served[path] == nil {
			// The route that serves docs.OpenAPI is added in routes.go; until
			// it is, the document may describe it ahead of the router. Once it
			// is routed, it is checked like every other path.
			t.Logf("GET /openapi.yaml is documented but not routed yet")
			continue
		}
		for method := range methods {
			if !served[path][method] {
				t.Errorf("document describes %s %s; router serves %s with %v, want %s", method, path, path, sortedKeys(served[path]), method)
			}
		}
	}
}

// operationMethods maps OpenAPI operation keys to HTTP methods.
var operationMethods = map[string]string{
	"get": http.MethodGet, "put": http.MethodPut, "post": http.MethodPost, "patch": http.MethodPatch,
	"delete": http.MethodDelete, "head": http.MethodHead, "options": http.MethodOptions, "trace": http.MethodTrace,
}

// anyMethod reports whether a route answers every method chi knows, as a
// route mounted with Handle does: chi.Walk lists it once per method.
func anyMethod(methods map[string]bool) bool {
	for _, m := range []string{http.MethodConnect, http.MethodDelete, http.MethodGet, http.MethodHead,
		http.MethodOptions, http.MethodPatch, http.MethodPost, http.MethodPut, http.MethodTrace} {
		if !methods[m] {
			return false
		}
	}
	return true
}

// checkResponses checks that op has at least one response and that every 4xx
// and 5xx response, itself or through a $ref to components/responses, has
// application/problem+json as its only content type (text/plain on the
// Pusher HTTP API, whose clients expect Pusher's shapes).
func checkResponses(t *testing.T, doc *yamlNode, name string, op *yamlNode) {
	t.Helper()
	responses := op.child("responses")
	if responses == nil || len(responses.children) == 0 {
		t.Errorf("%s: responses = none, want at least one", name)
		return
	}
	for _, res := range responses.children {
		if !strings.HasPrefix(res.key, "4") && !strings.HasPrefix(res.key, "5") {
			continue
		}
		if ref := res.child("$ref"); ref != nil {
			target, ok := strings.CutPrefix(ref.scalar(), "#/components/responses/")
			resolved := doc.child("components").child("responses").child(target)
			if !ok || resolved == nil {
				t.Errorf("%s %s: $ref = %q, want a response in #/components/responses/", name, res.key, ref.scalar())
				continue
			}
			res = resolved
		}
		var types []string
		for _, c := range res.child("content").childrenOrNil() {
			types = append(types, c.key)
		}
		want := "application/problem+json"
		if strings.Contains(name, " /apps/") {
			want = "text/plain" // the Pusher HTTP API answers errors as Pusher does
		}
		if len(types) != 1 || types[0] != want {
			t.Errorf("%s %s: content types = %v, want [%s]", name, res.key, types, want)
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// yamlNode is a key of a block mapping, or an item ("-") of a block
// sequence, with its inline scalar value and the nodes indented under it.
type yamlNode struct {
	key      string
	value    string
	line     int
	children []*yamlNode
}

// child returns n's child with key, or nil. It is safe on a nil n.
func (n *yamlNode) child(key string) *yamlNode {
	if n == nil {
		return nil
	}
	for _, c := range n.children {
		if c.key == key {
			return c
		}
	}
	return nil
}

func (n *yamlNode) childrenOrNil() []*yamlNode {
	if n == nil {
		return nil
	}
	return n.children
}

func (n *yamlNode) scalar() string {
	if n == nil {
		return ""
	}
	return n.value
}

// parseYAMLTree reads the block structure of a YAML document: the subset
// docs/openapi.yaml is written in (block mappings and sequences indented by
// spaces, block scalars for long text, flow collections only as inline
// values, which are kept as text). gopkg.in/yaml.v3 is not a requirement of
// this module, so the test reads the document itself rather than add one.
// It refuses tabs in indentation and duplicate keys in a mapping.
func parseYAMLTree(src []byte) (*yamlNode, error) {
	type open struct {
		node   *yamlNode
		indent int
	}
	root := &yamlNode{}
	stack := []open{{root, -1}}
	blockIndent := -1 // > -1 while inside a block scalar begun at that indent

	for i, raw := range strings.Split(string(src), "\n") {
		lineNo := i + 1
		line := strings.TrimRight(raw, " \r")
		trimmed := strings.TrimLeft(line, " ")
		indent := len(line) - len(trimmed)
		if blockIndent >= 0 {
			if trimmed == "" || indent > blockIndent {
				continue // text of a block scalar
			}
			blockIndent = -1
		}
		if trimmed == "" || strings.HasPrefix(trimmed, "#") || line == "---" {
			continue
		}
		if strings.HasPrefix(trimmed, "\t") {
			return nil, fmt.Errorf("line %d: a tab in the indentation", lineNo)
		}
		for stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		parent := stack[len(stack)-1].node

		// "- rest": a sequence item, whose rest is a line of its own, two
		// columns further in.
		for trimmed == "-" || strings.HasPrefix(trimmed, "- ") {
			item := &yamlNode{key: "-", line: lineNo}
			parent.children = append(parent.children, item)
			stack = append(stack, open{item, indent})
			parent = item
			rest := strings.TrimLeft(strings.TrimPrefix(trimmed, "-"), " ")
			indent += len(trimmed) - len(rest)
			trimmed = rest
			if trimmed == "" {
				break
			}
		}
		if trimmed == "" {
			continue
		}

		key, value, isKey, err := splitKey(trimmed)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", lineNo, err)
		}
		if !isKey {
			if parent.key == "-" && len(parent.children) == 0 && parent.value == "" {
				parent.value = value // "- scalar"
				continue
			}
			if parent.value != "" {
				continue // a continuation of a multi-line plain scalar
			}
			return nil, fmt.Errorf("line %d: %q is neither a key nor a sequence item", lineNo, trimmed)
		}
		if parent.value != "" && parent.key != "-" {
			return nil, fmt.Errorf("line %d: key %q under %q, which already has the value %q", lineNo, key, parent.key, parent.value)
		}
		if parent.child(key) != nil {
			return nil, fmt.Errorf("line %d: duplicate key %q", lineNo, key)
		}
		n := &yamlNode{key: key, value: value, line: lineNo}
		parent.children = append(parent.children, n)
		stack = append(stack, open{n, indent})
		if strings.HasPrefix(value, "|") || strings.HasPrefix(value, ">") {
			blockIndent = indent
		}
	}
	return root, nil
}

// splitKey splits "key: value" (the key plain or quoted) into its key and its
// scalar value, unquoted and without a trailing comment. A line that is not a
// mapping entry comes back with isKey false and the line as its value.
func splitKey(s string) (key, value string, isKey bool, err error) {
	var rest string
	switch s[0] {
	case '\'', '"':
		q, n, err := unquote(s)
		if err != nil {
			return "", "", false, err
		}
		key, rest = q, s[n:]
		if !strings.HasPrefix(rest, ":") {
			return "", s, false, nil // a quoted scalar, not a key
		}
		rest = rest[1:]
	case '{', '[':
		return "", s, false, nil // a flow collection
	default:
		k, r, ok := strings.Cut(s, ": ")
		if !ok {
			k, ok = strings.CutSuffix(s, ":")
		}
		if !ok {
			return "", stripComment(s), false, nil
		}
		key, rest = k, r
	}
	rest = strings.TrimSpace(rest)
	if rest != "" && (rest[0] == '\'' || rest[0] == '"') {
		v, n, err := unquote(rest)
		if err != nil {
			return "", "", false, err
		}
		if tail := strings.TrimSpace(rest[n:]); tail != "" && !strings.HasPrefix(tail, "#") {
			return "", "", false, fmt.Errorf("unexpected %q after a quoted value", tail)
		}
		return key, v, true, nil
	}
	rest = stripComment(rest)
	if strings.Contains(rest, ": ") || strings.HasSuffix(rest, ":") {
		return "", "", false, fmt.Errorf("the plain value %q holds \": \", which YAML reads as a mapping; quote it", rest)
	}
	if rest != "" && strings.ContainsRune("`@%&*!", rune(rest[0])) {
		return "", "", false, fmt.Errorf("the plain value %q starts with a YAML indicator; quote it", rest)
	}
	return key, rest, true, nil
}

// unquote reads the quoted string at the start of s and returns it and the
// number of bytes it took.
func unquote(s string) (string, int, error) {
	if s[0] == '"' {
		for i := 1; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '"':
				v, err := strconv.Unquote(s[:i+1])
				return v, i + 1, err
			}
		}
		return "", 0, fmt.Errorf("unterminated string %s", s)
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != '\'' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '\'' {
			b.WriteByte('\'')
			i++
			continue
		}
		return b.String(), i + 1, nil
	}
	return "", 0, fmt.Errorf("unterminated string %s", s)
}

// stripComment drops a " # comment" from a plain scalar.
func stripComment(s string) string {
	if i := strings.Index(s, " #"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}
