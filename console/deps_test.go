package console

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/restic-manager/restic-manager/"

// The console's parts depend one way: console → api, ui → fleet, alerts,
// auth → storage and below. This test fails when that breaks.
func TestConsoleDependenciesPointOneWay(t *testing.T) {
	imports := moduleImports(t, "..")
	if len(imports) < 5 {
		t.Fatalf("found %d packages under ..", len(imports))
	}
	for pkg, deps := range imports {
		for _, d := range deps {
			d = strings.TrimPrefix(d, module)
			switch {
			case (d == "console/api" || d == "console/ui") && pkg != "console":
				t.Errorf("%s imports %s: only console wires the API and the pages", pkg, d)
			case pkg == "console/fleet" && (d == "net/http" || strings.HasPrefix(d, "console/") && d != "console/input" && d != "console/hooks" && d != "console/progress"):
				t.Errorf("console/fleet imports %s: the fleet speaks no HTTP and depends on no other part of the console", d)
			case (pkg == "console/hooks" || pkg == "console/input" || pkg == "console/progress") && strings.HasPrefix(d, "console") && d != "console/input":
				t.Errorf("%s imports %s: it is a leaf the fleet imports", pkg, d)
			case (pkg == "console/alerts" || pkg == "console/auth" || pkg == "console/metrics") &&
				(d == "console/api" || d == "console/ui" || d == "console/view" || d == "console"):
				t.Errorf("%s imports %s: it must not depend on the web side", pkg, d)
			case !strings.HasPrefix(pkg, "console") && strings.HasPrefix(d, "console"):
				if pkg != "cmd/restic-manager" {
					t.Errorf("%s imports %s", pkg, d)
				}
			}
		}
	}
}

// storeWrites are the store's writers for what the fleet owns: jobs,
// schedules, repositories and their health, indexes, hosts and their
// credentials. The API and the pages read the store, and change these only
// through the fleet (whose lifecycle keeps the gate, health, alerts and
// agents in step).
var storeWrites = map[string]bool{
	"CreateJob": true, "CreateScheduledJob": true, "UpdateJob": true, "UpdateSchedules": true,
	"CreateRepo": true, "UpdateRepo": true, "PutSnapshotCache": true, "PutIndexNodes": true, "PutIndexMeta": true, "DropIndex": true,
	"CreateHost": true, "UpdateHost": true, "DeleteHost": true, "PutEnrollToken": true, "ConsumeEnrollToken": true,
	"PutIntegrationUser": true, "DeleteIntegrationUser": true,
	"CreateEnrollKey": true, "UseEnrollKey": true, "DeleteEnrollKey": true,
}

func TestWebSideWritesFleetRecordsOnlyThroughTheFleet(t *testing.T) {
	for _, dir := range []string{"api", "ui", "view"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no Go files (%v)", dir, err)
		}
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || !storeWrites[sel.Sel.Name] {
					return true
				}
				// s.store.X(…): the receiver is a field named store.
				if inner, ok := sel.X.(*ast.SelectorExpr); ok && inner.Sel.Name == "store" {
					t.Errorf("%s calls store.%s: go through the fleet", file, sel.Sel.Name)
				}
				return true
			})
		}
	}
}

// moduleImports reads the imports of every package under root (its
// non-test files, as go list's Imports), keyed by the path relative to the
// module, with the module's prefix taken off the imports too.
func moduleImports(t *testing.T, root string) map[string][]string {
	t.Helper()
	imports := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() && path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "tools") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(rel)
		for _, im := range f.Imports {
			imports[pkg] = append(imports[pkg], strings.TrimPrefix(strings.Trim(im.Path.Value, `"`), module))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading the imports under %s: %v", root, err)
	}
	return imports
}
