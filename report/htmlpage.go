package report

import (
	"html/template"
	"math"
	"strconv"
	"time"
)

// pageTmpl draws a page. html/template escapes every value by its context
// (element text, attribute), so client-supplied names and senders cannot
// add markup. The Content-Security-Policy forbids every script and every
// fetch: the page needs neither, and it shows text that strangers chose.
var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"n":     thousands,
	"secs":  func(s int64) string { return (time.Duration(s) * time.Second).String() },
	"utc":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04") },
	"label": clientLabel,
	"f":     trimFloat,
}).Parse(pageHTML))

// trimFloat prints a coordinate with at most one decimal.
func trimFloat(v float64) string {
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
}

const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mxpolicyd report, {{utc .Now}} UTC</title>
<style>
:root { --ink: #1d2330; --muted: #5b6475; --line: #d9dde5; --bg: #f5f6f8; --card: #fff; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { background: #1d2330; color: #fff; padding: 20px 32px; }
header h1 { margin: 0; font-size: 22px; font-weight: 600; }
header p { margin: 4px 0 0; color: #c4cad6; font-size: 14px; }
main { max-width: 1240px; margin: 0 auto; padding: 20px 16px 40px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 16px 20px 20px; margin: 0 0 20px; }
h2 { font-size: 18px; margin: 0 0 4px; }
p.lead { margin: 0 0 12px; color: var(--muted); font-size: 14px; }
.stats { display: grid; grid-template-columns: repeat(5, 1fr); gap: 12px; margin: 0 0 20px; }
.stat { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
.stat .v { font-size: 26px; font-weight: 650; font-variant-numeric: tabular-nums; }
.stat .l { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
.stat .note { font-size: 13px; color: var(--muted); }
.empty { padding: 18px; border: 1px dashed var(--line); border-radius: 6px; color: var(--muted); text-align: center; }
svg.chart { display: block; width: 100%; height: auto; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: #333a48; }
svg text.total { font-weight: 600; fill: #1d2330; }
svg text.legend { font-size: 13px; }
svg text.caption { fill: #5b6475; }
svg line.grid { stroke: #e6e9ef; }
svg line.axis { stroke: #8a93a6; }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin-top: 8px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); background: #fafbfc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; overflow-wrap: anywhere; }
td.time { white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; }
details { margin-top: 10px; }
summary { cursor: pointer; color: var(--muted); font-size: 13px; }
footer { color: var(--muted); font-size: 12px; text-align: center; }
</style>
</head>
<body>
<header>
<h1>mxpolicyd report</h1>
<p>Generated {{utc .Now}} UTC · decisions since {{.SinceText}} · all days are UTC days</p>
</header>
<main>
{{if .Empty}}<section id="no-data"><h2>No data yet</h2>
<p class="empty">No decisions have been recorded {{if .Since.IsZero}}yet{{else}}since {{.SinceText}}{{end}}.
The decision log fills as the daemon answers Postfix (<code>decision_log.enabled</code>); come back after some mail has arrived.</p>
</section>{{end}}

<div class="stats" id="summary">{{range .Stats}}
<div class="stat"><div class="l">{{.Label}}</div><div class="v">{{.Value}}</div><div class="note">{{.Note}}</div></div>{{end}}
</div>

<section id="decisions">
<h2>Decisions per day</h2>
<p class="lead">Every request, stacked by the action Postfix was told. Observe-mode refusals are shown by what enforcing would have answered.</p>
{{with .ByAction}}{{template "chart" .}}{{else}}<p class="empty">No decisions yet.</p>{{end}}
{{with .ByCheck}}<h2 style="margin-top:18px">By deciding check</h2>
<p class="lead">The same requests by the check whose answer was final; "no decisive check" means every check let the request through.</p>
{{template "chart" .}}{{end}}
{{if .ActionTable.Rows}}<details><summary>Numbers per day</summary>
<table><thead><tr>{{range $i, $c := .ActionTable.Cols}}<th{{if $i}} class="num"{{end}}>{{$c}}</th>{{end}}</tr></thead>
<tbody>{{range .ActionTable.Rows}}<tr>{{range $i, $c := .}}<td{{if $i}} class="num"{{end}}>{{$c}}</td>{{end}}</tr>{{end}}</tbody></table>
</details>{{end}}
</section>

<section id="retry">
<h2>How long legitimate senders took to retry</h2>
<p class="lead">Greylisting passes after a delay, by the time between the first attempt and the pass. Short delays mean greylisting costs real mail little.</p>
{{with .Delays}}{{template "chart" .}}{{else}}<p class="empty">No greylisted sender has passed yet.</p>{{end}}
{{if .Retry}}<details><summary>Percentiles per day</summary>
<table><thead><tr><th>day</th><th class="num">passes</th><th class="num">min</th><th class="num">median</th><th class="num">p90</th><th class="num">p99</th><th class="num">max</th><th class="num">mean</th></tr></thead>
<tbody>{{range .Retry}}<tr><td>{{.Day}}</td><td class="num">{{n .Passes}}</td><td class="num">{{secs .Min}}</td><td class="num">{{secs .P50}}</td><td class="num">{{secs .P90}}</td><td class="num">{{secs .P99}}</td><td class="num">{{secs .Max}}</td><td class="num">{{secs .Avg}}</td></tr>{{end}}</tbody></table>
</details>{{end}}
</section>

<section id="never">
<h2>Deferred and never retried</h2>
<p class="lead">Clients whose greylisted triplets (address, sender, recipient) never came back: mostly spam engines. A sender retrying from another host of its pool also shows here.</p>
{{with .Never}}{{template "chart" .}}{{else}}<p class="empty">No deferred triplet is waiting for a retry.</p>{{end}}
{{if .NeverRows}}<details><summary>Clients in detail</summary>
<table id="never-table"><thead><tr><th>client</th><th>HELO</th><th>a sender</th><th class="num">triplets</th><th class="num">deferrals</th><th>last deferred (UTC)</th></tr></thead>
<tbody>{{range .NeverRows}}<tr><td class="mono">{{label .Client .ClientName}}</td><td class="mono">{{.Helo}}</td><td class="mono">{{if .Sender}}{{.Sender}}{{else}}&lt;&gt;{{end}}</td><td class="num">{{n .Triplets}}</td><td class="num">{{n .Deferrals}}</td><td class="time">{{utc .LastDeferred}}</td></tr>{{end}}</tbody></table>
</details>{{end}}
</section>

<section id="lists">
<h2>Top rejecting DNS lists</h2>
<p class="lead">Rejections by the DNS list check; a rejection counts for each list that scored.</p>
{{with .Lists}}{{template "chart" .}}{{else}}<p class="empty">No DNS list has rejected a request.</p>{{end}}
</section>

<section id="pending">
<h2>Pending triplets</h2>
<p class="lead">Greylisted triplets that have not passed yet: <strong>{{n .PendingCount}}</strong>{{with .PendingOldest}}, the oldest first seen {{utc (index . 0).FirstSeen}} UTC, {{$.OldestAge}} ago{{end}}. Rows past <code>greylist.max_age</code> stay until <code>mxpolicyd gc</code>.</p>
{{if .PendingOldest}}<table id="pending-table"><thead><tr><th>client</th><th>sender</th><th>recipient</th><th>first seen (UTC)</th><th class="num">attempts</th></tr></thead>
<tbody>{{range .PendingOldest}}<tr><td class="mono">{{.Client}}</td><td class="mono">{{.Sender}}</td><td class="mono">{{.Recipient}}</td><td class="time">{{utc .FirstSeen}}</td><td class="num">{{n .Attempts}}</td></tr>{{end}}</tbody></table>{{else}}<p class="empty">No triplet is pending.</p>{{end}}
</section>
<footer>mxpolicyd report · the views are described in docs/reporting.md</footer>
</main>
</body>
</html>
{{define "chart"}}<svg id="{{.ID}}" class="{{.Class}}" viewBox="0 0 {{.W}} {{.H}}" width="{{.W}}" height="{{.H}}" role="img" aria-labelledby="{{.ID}}-t {{.ID}}-d" xmlns="http://www.w3.org/2000/svg">
<title id="{{.ID}}-t">{{.Title}}</title>
<desc id="{{.ID}}-d">{{.Desc}}</desc>
<defs>{{range .Patterns}}<pattern id="{{.ID}}" width="6" height="6" patternUnits="userSpaceOnUse"><rect width="6" height="6" fill="{{.Color}}"/>{{if .Path}}<path d="{{.Path}}" stroke="#fff" stroke-opacity="0.55" stroke-width="1.3" stroke-linecap="round" fill="none"/>{{end}}</pattern>{{end}}</defs>
{{range .Lines}}<line class="{{.Class}}" x1="{{f .X1}}" y1="{{f .Y1}}" x2="{{f .X2}}" y2="{{f .Y2}}"/>
{{end}}{{range .Rects}}<rect x="{{f .X}}" y="{{f .Y}}" width="{{f .W}}" height="{{f .H}}" fill="{{.Fill}}"><title>{{.Title}}</title></rect>
{{end}}{{range .Texts}}<text x="{{f .X}}" y="{{f .Y}}" text-anchor="{{.Anchor}}" class="{{.Class}}">{{.Text}}</text>
{{end}}</svg>{{end}}`
