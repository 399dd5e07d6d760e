package report

import (
	"html/template"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
)

// Figure writes p as an SVG file in dir and returns it as inline SVG for
// a page, drawn and styled as the report's own plots (for the other
// commands' pages: `bench cache`).
func Figure(p *plot.Plot, dir, file string, w, h vg.Length) (template.HTML, error) {
	f, err := render(p, dir, file, w, h)
	return f.SVG, err
}
