package main

import (
	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/multichecker"

	"github.com/fb4b1dcc/pulse/analysis/fixedinterval"
	"github.com/fb4b1dcc/pulse/analysis/grpconly"
	"github.com/fb4b1dcc/pulse/analysis/healthio"
	"github.com/fb4b1dcc/pulse/analysis/nettimeout"
	"github.com/fb4b1dcc/pulse/analysis/oncepanic"
	"github.com/fb4b1dcc/pulse/analysis/racyflag"
	"github.com/fb4b1dcc/pulse/analysis/statusonly"
	"github.com/fb4b1dcc/pulse/analysis/tickerstop"
	"github.com/fb4b1dcc/pulse/analysis/timeafter"
)

// analyzers lists pulselint's checks, one per anti-pattern family.
func analyzers() []*analysis.Analyzer {
	return []*analysis.Analyzer{
		timeafter.Analyzer,
		tickerstop.Analyzer,
		nettimeout.Analyzer,
		healthio.Analyzer,
		racyflag.Analyzer,
		oncepanic.Analyzer,
		statusonly.Analyzer,
		grpconly.Analyzer,
		fixedinterval.Analyzer,
	}
}

func main() { multichecker.Main(analyzers()...) }
