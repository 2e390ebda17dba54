package config

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"

	"github.com/fb4b1dcc/pulse/condition"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/probe"
)

type moduleDef struct {
	spec monitor.ProbeSpec
}

// buildModules validates every module: its settings through probe.New
// (which builds nothing that runs) and its conditions through the CEL
// compiler, whose errors point at a column of the expression.
func buildModules(f *File, preset Preset, p *problems) map[string]moduleDef {
	out := map[string]moduleDef{}
	names := make([]string, 0, len(f.Modules))
	for n := range f.Modules {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		m := f.Modules[name].Module
		field := "modules." + name
		if !nameRE.MatchString(name) {
			p.add(field, "%q is not a valid module name", name)
		}
		if m.Timeout == 0 {
			m.Timeout = preset.ProbeTimeout
		}
		if m.Timeout < minTimeout || m.Timeout > maxTimeout {
			p.add(field+".timeout", "%s is outside %s..%s", m.Timeout, minTimeout, maxTimeout)
		}
		if _, err := condition.Compile(m.Conditions); err != nil {
			for _, e := range joined(err) {
				var ce *condition.Error
				if errors.As(e, &ce) {
					p.add(field+".conditions."+ce.Field, "%s", strings.TrimSpace(ce.Error()[len(ce.Field)+2:]))
				} else {
					p.add(field+".conditions", "%v", e)
				}
			}
			continue
		}
		pr, err := probe.New(m)
		if err != nil {
			p.add(field, "%v", strings.TrimPrefix(err.Error(), "probe: "))
			continue
		}
		pr.Close()
		out[name] = moduleDef{spec: monitor.ProbeSpec{Name: name, Module: m, Timeout: m.Timeout}}
	}
	return out
}

func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func splitHostPort(s string) (string, string, error) {
	h, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", "", err
	}
	if port == "" {
		return "", "", fmt.Errorf("missing port")
	}
	return h, port, nil
}
