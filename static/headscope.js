/* headscope dashboard: what the browser does without waiting for the server.
 *
 * Turning a click into the next URL (the page's whole state), drawing thumbnails and heatmaps from the
 * attention already in the page, decoding float16, and the figure downloads. Everything else (parsing
 * and checking links, scores, flipped examples, messages, number exports) is rendered by the Python
 * callbacks in app/. The URL format belongs to app/urlstate.py: this file's encoder is generic over the
 * parameter list the page hands it (data-url-params), so a new parameter needs no change here; a
 * control that sets one is any component with the id {"param": NAME} and a `value`.
 * Values shown to the user go through React (text, never HTML) or are escaped for Plotly's labels.
 */
(function () {
    'use strict';

    const dc = () => window.dash_clientside;
    const NO = () => window.dash_clientside.no_update;

    const PENDING_SCORE = 'Computing the score on all of dev… (a new mask takes a while on a CPU; the page '
        + 'stays usable meanwhile)';

    // ---- the URL (app/urlstate.py owns its format) ----------------------------------------------
    let paramsCache = null;
    /** URL_PARAMS of app/urlstate.py: [{name, scope, default, omit_default}], in canonical order. */
    function urlParams() {
        if (!paramsCache) paramsCache = JSON.parse(document.querySelector('[data-url-params]').dataset.urlParams);
        return paramsCache;
    }
    function encodeValue(value) {
        return encodeURIComponent(value).replace(/'/g, '%27').replace(/%2C/gi, ',');
    }
    /** app/urlstate.py's encode_query: values (text, or null = left out) -> the canonical query. */
    function encodeQuery(values) {
        const parts = [];
        for (const p of urlParams()) {
            const value = values[p.name];
            if (value === null || value === undefined || (p.omit_default && value === p.default)) continue;
            parts.push(`${p.name}=${encodeValue(value)}`);
        }
        return '?' + parts.join('&');
    }
    /** A canonical query -> its values (the first of each known parameter; absent ones null). */
    function readQuery(search) {
        const query = new URLSearchParams(search || '');
        const values = {};
        for (const p of urlParams()) values[p.name] = query.has(p.name) ? query.get(p.name) : null;
        return values;
    }
    /** The values of one scope ("focus", "input", "mask"): what a request depends on. */
    function scoped(values, scopes) {
        const part = {};
        for (const p of urlParams()) if (scopes.includes(p.scope)) part[p.name] = values[p.name];
        return part;
    }
    function headName(layer, head) {
        return `L${layer}H${head}`;
    }
    /** 'L3H7' -> [3, 7] (ids and `off` name heads the way the URL does). */
    function parseHead(name) {
        const match = /^L(\d+)H(\d+)$/.exec(name);
        return [Number(match[1]), Number(match[2])];
    }
    /** `off`'s text -> [[layer, head], ...] sorted, without repeats; and back. */
    function readHeads(off) {
        const names = new Set((off || '').split(',').filter((n) => /^L\d+H\d+$/.test(n)));
        return Array.from(names, parseHead).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    }
    function writeHeads(heads) {
        return readHeads(heads.map(([l, h]) => headName(l, h)).join(',')).map(([l, h]) => headName(l, h)).join(',');
    }
    function isOff(off, layer, head) {
        return off.some(([l, h]) => l === layer && h === head);
    }
    /** The view a query names, typed for drawing: focus and disabled heads. */
    function viewOf(search) {
        const values = readQuery(search);
        return {values: values, layer: Number(values.layer || 0), head: Number(values.head || 0),
            off: readHeads(values.off), mode: values.mode};
    }
    function sameJson(a, b) {
        return JSON.stringify(a) === JSON.stringify(b);
    }
    /** The clicked control's id, or null for the calls Dash makes when such components appear. */
    function clickedId() {
        const ctx = dc().callback_context;
        const fired = (ctx.triggered || []).filter((t) => t.value);
        return fired.length ? ctx.triggered_id : null;
    }

    /** The next URL values after a control (null: the control changes nothing). */
    function nextValues(id, values, modelInfo) {
        const off = readHeads(values.off);
        const change = {};
        if (id.toggle) {
            const [layer, head] = parseHead(id.toggle);
            change.off = writeHeads(isOff(off, layer, head) ? off.filter(([l, h]) => !(l === layer && h === head))
                : off.concat([[layer, head]]));
        } else if (id.focus) {
            const [layer, head] = parseHead(id.focus);
            change.layer = String(layer);
            change.head = String(head);
        } else if (id['layer-toggle'] !== undefined) {
            const layer = id['layer-toggle'];
            const heads = Array.from({length: modelInfo.num_heads}, (_, h) => h);
            const others = off.filter(([l]) => l !== layer);
            change.off = writeHeads(heads.every((h) => isOff(off, layer, h)) ? others
                : others.concat(heads.map((h) => [layer, h])));
        } else if (id === 'reset-mask') {
            change.off = '';
        } else if (id['mode-button']) {
            change.mode = id['mode-button'];
        } else if (id.flipped !== undefined) {
            Object.assign(change, {ex: String(id.flipped), text: null, pair: null});
        } else if (id.param) {
            change[id.param] = id.value === null || id.value === undefined ? null : String(id.value);
        }
        const next = Object.assign({}, values, change);
        return encodeQuery(next) === encodeQuery(values) ? null : next;  // a default's control set to it: nothing
    }

    // ---- attention data: base64 float16 -> Float32Array, decoded once per store value ----------
    let halfTable = null;
    function halfToFloat() {
        if (halfTable) return halfTable;
        halfTable = new Float32Array(65536);
        for (let bits = 0; bits < 65536; bits++) {
            const exponent = (bits >> 10) & 31;
            const fraction = bits & 1023;
            let value;
            if (exponent === 0) value = fraction * Math.pow(2, -24);
            else if (exponent === 31) value = fraction ? NaN : Infinity;
            else value = (1 + fraction / 1024) * Math.pow(2, exponent - 15);
            halfTable[bits] = bits & 0x8000 ? -value : value;
        }
        return halfTable;
    }
    /** The API's answer text, parsed once per text (the Dash process passes it through untouched). */
    const parsedAnswers = new Map();
    function parsedAnswer(text) {
        if (!text) return null;
        if (!parsedAnswers.has(text)) {
            if (parsedAnswers.size >= 4) parsedAnswers.delete(parsedAnswers.keys().next().value);
            const answer = JSON.parse(text);
            answer.byName = new Map(answer.heads.map((h) => [headName(h.layer, h.head), h.data]));
            answer.decoded = new Map();
            parsedAnswers.set(text, answer);
        }
        return parsedAnswers.get(text);
    }
    function headValues(answer, layer, head) {
        if (!answer) return null;
        const cache = answer.decoded;
        const name = headName(layer, head);
        if (!cache.has(name)) {
            const encoded = answer.byName.get(name);
            if (!encoded) return null;
            const bytes = atob(encoded);
            const table = halfToFloat();
            const values = new Float32Array(bytes.length >> 1);
            for (let i = 0; i < values.length; i++) {
                values[i] = table[bytes.charCodeAt(2 * i) | (bytes.charCodeAt(2 * i + 1) << 8)];
            }
            cache.set(name, values);
        }
        return cache.get(name);
    }

    // ---- drawing helpers -------------------------------------------------------------------------
    function escapeLabel(text) {  // Plotly renders labels as pseudo-HTML
        return String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
    }
    /** A Float32Array as Plotly's typed-array spec: one base64 string, so Dash compares figures cheaply
     * (a plain nested array is deep-compared element by element on every update of the page). */
    function packed(values, shape) {
        const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
        let binary = '';
        for (let i = 0; i < bytes.length; i += 0x8000) {
            binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
        }
        return {dtype: 'f4', bdata: btoa(binary), shape: shape};
    }
    function maxOf(values) {
        let best = 0;
        for (const v of values) if (v > best) best = v;
        return best;
    }
    /** The product's palette (app/palette.py), handed over by the page shell's data-palette attribute. */
    let paletteCache = null;
    function palette() {
        if (!paletteCache) paletteCache = JSON.parse(document.querySelector('[data-palette]').dataset.palette);
        return paletteCache;
    }
    function rgbOf(hex) {
        return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
    }
    /** The colour at t (0..1) of a Plotly-style colour scale, as [r, g, b]. */
    function colourAt(scale, t) {
        for (let i = 1; i < scale.length; i++) {
            if (t <= scale[i][0] || i === scale.length - 1) {
                const [t0, c0] = scale[i - 1];
                const [t1, c1] = scale[i];
                const f = t1 > t0 ? Math.min(Math.max((t - t0) / (t1 - t0), 0), 1) : 0;
                const a = rgbOf(c0);
                const b = rgbOf(c1);
                return a.map((v, k) => Math.round(v + f * (b[k] - v)));
            }
        }
        return rgbOf(scale[0][1]);
    }
    const BLANK = 'data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw==';
    function thumbnailUri(canvas, values, n) {
        canvas.width = n;
        canvas.height = n;
        const context = canvas.getContext('2d');
        const image = context.createImageData(n, n);
        const top = maxOf(values) || 1;
        const scale = palette().sequential;
        for (let i = 0; i < n * n; i++) {
            const [r, g, b] = colourAt(scale, Math.sqrt(Math.max(values[i], 0) / top));
            image.data[4 * i] = r;
            image.data[4 * i + 1] = g;
            image.data[4 * i + 2] = b;
            image.data[4 * i + 3] = 255;
        }
        context.putImageData(image, 0, 0);
        return canvas.toDataURL('image/png');
    }
    function emptyFigure(message, height) {
        return {
            data: [],
            layout: {
                height: height, margin: {l: 10, r: 10, t: 10, b: 10},
                xaxis: {visible: false}, yaxis: {visible: false},
                annotations: message ? [{text: escapeLabel(message), showarrow: false, x: 0.5, y: 0.5,
                    xref: 'paper', yref: 'paper', font: {size: 13, color: palette().muted}}] : [],
                paper_bgcolor: '#fff', plot_bgcolor: '#fff',
            },
        };
    }
    /** Token labels made unique with zero-width spaces, so that each token is its own category and the
     * hover text can name it without a per-cell label array. */
    function tokenCategories(tokens) {
        const seen = new Map();
        return tokens.map((token) => {
            const label = escapeLabel(token);
            const count = seen.get(label) || 0;
            seen.set(label, count + 1);
            return label + '\u200b'.repeat(count);
        });
    }
    function tokenAxes(tokens) {
        const size = tokens.length > 60 ? 7 : tokens.length > 30 ? 9 : 11;
        const common = {type: 'category', tickfont: {size: size}, showgrid: false, zeroline: false,
            tickmode: 'linear', dtick: 1};
        return {
            x: Object.assign({tickangle: -60, title: {text: 'to token (key)', font: {size: 11}}}, common),
            y: Object.assign({autorange: 'reversed', title: {text: 'from token (query)', font: {size: 11}}}, common),
        };
    }
    function heatmapFigure(tokens, values, n, height) {
        const labels = tokenCategories(tokens);
        const axes = tokenAxes(tokens);
        return {
            data: [{
                type: 'heatmap', z: packed(values, `${n},${n}`), x: labels, y: labels, colorscale: palette().sequential,
                zmin: 0, zmax: Math.max(maxOf(values), 1e-6),
                hovertemplate: 'from <b>%{y}</b><br>to <b>%{x}</b><br>weight %{z:.4f}<extra></extra>',
                colorbar: {thickness: 10, len: 0.9, tickfont: {size: 10}},
            }],
            layout: {
                height: height, margin: {l: 90, r: 10, t: 8, b: 90}, xaxis: axes.x, yaxis: axes.y,
                font: {family: 'system-ui, sans-serif', size: 11}, paper_bgcolor: '#fff', plot_bgcolor: '#fff',
            },
        };
    }
    function differenceFigure(tokens, values, baseline, n, height) {
        const difference = new Float32Array(n * n);
        let largest = 0;
        for (let i = 0; i < n * n; i++) {
            difference[i] = values[i] - baseline[i];
            largest = Math.max(largest, Math.abs(difference[i]));
        }
        const labels = tokenCategories(tokens);
        const axes = tokenAxes(tokens);
        const bound = Math.max(largest, 1e-3);
        return {
            data: [{
                type: 'heatmap', z: packed(difference, `${n},${n}`), x: labels, y: labels, colorscale: palette().diverging,
                zmin: -bound, zmax: bound, zmid: 0,
                hovertemplate: 'from <b>%{y}</b><br>to <b>%{x}</b><br>change %{z:+.4f}<extra></extra>',
                colorbar: {thickness: 10, len: 0.9, tickfont: {size: 10}},
            }],
            layout: {
                height: height, margin: {l: 90, r: 10, t: 24, b: 90}, xaxis: axes.x, yaxis: axes.y,
                font: {family: 'system-ui, sans-serif', size: 11}, paper_bgcolor: '#fff', plot_bgcolor: '#fff',
                title: {text: largest < 1e-4 ? 'no change from baseline'
                    : `largest change ${largest.toFixed(4)}`, font: {size: 11}, x: 0.02, y: 0.99},
            },
        };
    }
    function linesFigure(tokens, values, n) {
        const bins = 8;
        const xs = Array.from({length: bins}, () => []);
        const ys = Array.from({length: bins}, () => []);
        for (let i = 0; i < n; i++) {
            for (let j = 0; j < n; j++) {
                const weight = values[i * n + j];
                if (!(weight >= 0.02)) continue;
                const bin = Math.min(bins - 1, Math.floor(Math.sqrt(weight) * bins));
                xs[bin].push(0, 1, NaN);  // NaN breaks the line between two segments
                ys[bin].push(i, j, NaN);
            }
        }
        const labels = tokens.map(escapeLabel);
        const dark = colourAt(palette().sequential, 1);
        const indices = Array.from({length: n}, (_, i) => i);
        const traces = xs.map((x, bin) => ({
            type: 'scatter', mode: 'lines', x: packed(Float32Array.from(x), String(x.length)),
            y: packed(Float32Array.from(ys[bin]), String(x.length)), hoverinfo: 'skip', showlegend: false,
            line: {color: `rgba(${dark.join(', ')}, ${((bin + 1) / bins) ** 2 * 0.9 + 0.05})`, width: 1 + bin * 0.35},
        }));
        const hover = 'weights from <b>%{text}</b> (%{y})<extra></extra>';
        traces.push({type: 'scatter', mode: 'text', x: indices.map(() => 0), y: indices, text: labels,
            textposition: 'middle left', hovertemplate: hover, showlegend: false,
            textfont: {size: n > 60 ? 9 : 12}});
        traces.push({type: 'scatter', mode: 'text', x: indices.map(() => 1), y: indices, text: labels,
            textposition: 'middle right', hovertemplate: 'to <b>%{text}</b> (%{y})<extra></extra>',
            showlegend: false, textfont: {size: n > 60 ? 9 : 12}});
        return {
            data: traces,
            layout: {
                height: Math.max(260, Math.min(n * 17 + 40, 2200)), margin: {l: 10, r: 10, t: 24, b: 10},
                xaxis: {visible: false, range: [-0.75, 1.75], fixedrange: true},
                yaxis: {visible: false, autorange: 'reversed', fixedrange: true},
                annotations: [
                    {text: 'from (query)', x: 0, y: 1, yref: 'paper', yanchor: 'bottom', showarrow: false,
                        font: {size: 11, color: palette().muted}, xanchor: 'right'},
                    {text: 'to (key)', x: 1, y: 1, yref: 'paper', yanchor: 'bottom', showarrow: false,
                        font: {size: 11, color: palette().muted}, xanchor: 'left'},
                ],
                paper_bgcolor: '#fff', plot_bgcolor: '#fff', font: {family: 'system-ui, sans-serif'},
            },
        };
    }
    function download(filename, blob) {
        const link = document.createElement('a');
        link.href = URL.createObjectURL(blob);
        link.download = filename;
        document.body.appendChild(link);
        link.click();
        setTimeout(() => {
            URL.revokeObjectURL(link.href);
            link.remove();
        }, 1000);
    }

    // ---- the callbacks (registered from app/*_callbacks.py by name) -------------------------------
    window.dash_clientside = Object.assign({}, window.dash_clientside, {
        headscope: {
            /** A control -> the next page-search (a new history entry) and no more stale problems. */
            nextSearch: function () {
                const args = Array.from(arguments);
                const [page, problems, modelInfo] = args.slice(-3);
                // A button counts once it has been clicked; Dash also calls this when buttons appear (the
                // flipped list), with n_clicks 0. A value (picker, {"param": NAME}) counts when it is set.
                const fired = (dc().callback_context.triggered || []).filter((t) => (t.prop_id.endsWith('.n_clicks')
                    ? t.value : t.value !== null && t.value !== undefined));
                if (!fired.length || !page || !modelInfo) return [NO(), NO()];
                const source = fired[0].prop_id.slice(0, fired[0].prop_id.lastIndexOf('.'));
                const id = source.startsWith('{') ? JSON.parse(source) : source;
                const value = fired[0].value;
                const clear = problems && problems.length ? [] : NO();
                if (id === 'dismiss-problems') return [NO(), clear];
                const values = readQuery(page.search);
                let next;
                if (id === 'example-picker') {
                    next = String(value) === values.ex ? null
                        : Object.assign({}, values, {ex: String(value), text: null, pair: null});
                } else {
                    next = nextValues(id.param ? {param: id.param, value: value} : id, values, modelInfo);
                }
                if (!next) return [NO(), NO()];
                return [{search: encodeQuery(next), how: 'push'}, clear];
            },
            /** The address bar -> the server's parser, unless the page itself wrote that search. */
            routeSearch: function (search, page) {
                const current = search || '';
                if (page && page.search === current) return NO();
                return {search: current, at: Date.now()};
            },
            /** page-search -> the address bar (a new entry for a click, a quiet replacement for a link the
             * server normalised), the share box, and a busy score when the mask changes, in one update. */
            applySearch: function (page, previous) {
                if (!page) return [NO(), NO(), NO(), NO(), NO()];
                if (window.location.search !== page.search) {
                    const url = window.location.pathname + page.search + window.location.hash;
                    if (page.how === 'push') window.history.pushState(window.history.state, '', url);
                    else window.history.replaceState(window.history.state, '', url);
                }
                const share = window.location.origin + window.location.pathname + page.search;
                const maskChanged = !previous || !sameJson(scoped(readQuery(previous), ['mask']),
                    scoped(readQuery(page.search), ['mask']));
                return [page.search === previous ? NO() : page.search, share, maskChanged ? '…' : NO(),
                    maskChanged ? 'true' : NO(), maskChanged ? PENDING_SCORE : NO()];
            },
            /** The address bar -> what to fetch: attention for the input and mask, the score for the mask
             * (each only when it changes, so moving the focus fetches nothing). */
            deriveRequests: function (page, attentionRequest, evaluateRequest) {
                if (!page) return [NO(), NO(), NO()];
                const values = readQuery(page.search);
                const attention = encodeQuery(scoped(values, ['input', 'mask']));
                const evaluate = encodeQuery(scoped(values, ['mask']));
                const newAttention = attention !== attentionRequest;
                return [newAttention ? attention : NO(), evaluate === evaluateRequest ? NO() : evaluate,
                    newAttention ? 'true' : NO()];
            },
            /** The address bar -> what the word view depends on (input, mask, measure, focus), or null at token
             * level, so nothing is fetched unless the view is shown (app/word_callbacks.py). */
            deriveWordRequest: function (page, previous) {
                if (!page) return NO();
                const values = readQuery(page.search);
                const request = values.level === 'word' ? encodeQuery(scoped(values, ['input', 'mask', 'focus'])) : null;
                return request === (previous ?? null) ? NO() : request;
            },
            /** The mask and mode -> every toggle, layer label and mode button. */
            styleMask: function (request, modelInfo) {
                const [ablated, pressed, titles, layers, modes, modesPressed] = dc().callback_context.outputs_list;
                if (!request || !modelInfo) {
                    return [ablated, pressed, titles, layers, modes, modesPressed].map((group) => group.map(() => NO()))
                        .concat([NO(), NO()]);
                }
                const view = viewOf(request);
                const off = new Set(view.off.map(([l, h]) => headName(l, h)));
                const states = ablated.map(({id}) => String(off.has(id.toggle)));
                const layerClass = layers.map(({id}) => {
                    const count = view.off.filter(([l]) => l === id['layer-toggle']).length;
                    return 'layer-toggle' + (count === modelInfo.num_heads ? ' all-off' : count ? ' some-off' : '');
                });
                const total = modelInfo.num_layers * modelInfo.num_heads;
                return [
                    states, states,
                    titles.map(({id}) => (off.has(id.toggle) ? 'Enable ' : 'Disable ') + id.toggle),
                    layerClass,
                    modes.map(({id}) => 'mode-button' + (id['mode-button'] === view.mode ? ' active' : '')),
                    modesPressed.map(({id}) => String(id['mode-button'] === view.mode)),
                    off.size ? `${off.size} of ${total} heads off (${view.mode})` : `all ${total} heads on`,
                    off.size === 0,
                ];
            },
            /** The focus -> the focus ring's grid cell (one element moves; no cell is restyled). */
            styleFocus: function (page) {
                if (!page) return [NO(), NO()];
                const view = viewOf(page.search);
                return [{gridRow: `${2 * view.layer + 2} / span 2`, gridColumn: view.head + 2},
                    headName(view.layer, view.head)];
            },
            /** The state -> the input controls: the picker always shows the URL's example; a text from the
             * URL fills the text boxes (otherwise they keep what the user typed); every {"param": NAME}
             * control shows its parameter. */
            syncInputs: function (page, options) {
                const params = dc().callback_context.outputs_list[4].map(({id}) => NO());
                if (!page) return [NO(), NO(), NO(), NO(), params];
                const values = readQuery(page.search);
                const defaults = new Map(urlParams().map((p) => [p.name, p.default]));
                const controls = dc().callback_context.outputs_list[4].map(({id}) => values[id.param] ?? defaults.get(id.param));
                if (values.ex !== null) return [Number(values.ex), NO(), NO(), NO(), controls];
                if (values.text === null) return [NO(), NO(), NO(), NO(), controls];
                return [null, values.text, values.pair || '', true, controls];
            },
            /** The attention answer -> each head's picture, as the background of its focus button. */
            drawThumbnails: function (attention, request) {
                const [buttons] = dc().callback_context.outputs_list;
                const answer = attention && attention.request === request ? parsedAnswer(attention.masked) : null;
                const busy = String(!attention || attention.request !== request);
                const canvas = document.createElement('canvas');
                const n = answer ? answer.tokens.length : 0;
                const styles = buttons.map(({id}) => {
                    const [layer, head] = parseHead(id.focus);
                    const values = answer ? headValues(answer, layer, head) : null;
                    const style = {gridRow: `${2 * layer + 2} / span 1`, gridColumn: head + 2};
                    if (values) style.backgroundImage = `url(${thumbnailUri(canvas, values, n)})`;
                    return style;
                });
                return [styles, busy];
            },
            /** The focus and the attention answer -> the heatmap, the lines and the difference views. */
            drawFocus: function (page, attention) {
                if (!page) return [NO(), NO(), NO(), NO(), NO()];
                const view = viewOf(page.search);
                const title = `${headName(view.layer, view.head)} · layer ${view.layer}, head ${view.head}`
                    + (isOff(view.off, view.layer, view.head) ? ` · disabled (${view.mode})` : '');
                const answer = attention ? parsedAnswer(attention.masked) : null;
                if (!answer) {
                    const message = attention && attention.error ? 'No attention for this input' : 'Loading attention…';
                    return [emptyFigure(message, 430), emptyFigure('', 300), emptyFigure('', 420), title,
                        {height: '300px'}];
                }
                const n = answer.tokens.length;
                const values = headValues(answer, view.layer, view.head);
                if (!values) return [emptyFigure('No data for this head', 430), NO(), NO(), title, NO()];
                const lines = linesFigure(answer.tokens, values, n);
                const baseline = attention.baseline ? parsedAnswer(attention.baseline) : answer;
                const base = headValues(baseline, view.layer, view.head);
                const difference = base && base.length === values.length
                    ? differenceFigure(answer.tokens, values, base, n, 420) : emptyFigure('Loading the baseline…', 420);
                return [heatmapFigure(answer.tokens, values, n, 430), lines, difference, title,
                    {height: `${lines.layout.height}px`}];
            },
            /** A figure's PNG/SVG button -> the download (drawn in the browser, from what is on screen). */
            exportFigure: function (_clicks, page, attention, modelInfo) {
                const id = clickedId();
                if (!id || !page || !modelInfo) return NO();
                const view = viewOf(page.search);
                const label = `${view.off.length ? view.off.map(([l, h]) => headName(l, h)).join('+') : 'none'}`
                    + `-${view.mode}`;
                const name = `headscope-${id.export}-${headName(view.layer, view.head)}-${label}`;
                if (id.export === 'grid') {
                    exportGrid(id.format, name, view, attention ? parsedAnswer(attention.masked) : null, modelInfo);
                    return Date.now();
                }
                const graph = document.querySelector(`#${id.export} .js-plotly-plot`);
                if (graph && window.Plotly) {
                    window.Plotly.downloadImage(graph, {format: id.format, filename: name,
                        width: graph.clientWidth || 600, height: graph.clientHeight || 430});
                }
                return Date.now();
            },
            /** For the browser test of the two encoders: canonical query of URL values. */
            encodeQuery: encodeQuery,
        },
    });

    /** The head grid as one picture: every head's attention, disabled heads crossed out. */
    function exportGrid(format, name, state, attention, modelInfo) {
        if (!attention || !modelInfo) return;
        const n = attention.tokens.length;
        const cell = 64;
        const gap = 6;
        const left = 36;
        const top = 22;
        const layers = modelInfo.num_layers;
        const heads = modelInfo.num_heads;
        const width = left + heads * (cell + gap);
        const height = top + layers * (cell + gap) + 22;
        const canvas = document.createElement('canvas');
        const pictures = [];
        for (let layer = 0; layer < layers; layer++) {
            for (let head = 0; head < heads; head++) {
                const values = headValues(attention, layer, head);
                pictures.push({layer, head, uri: values ? thumbnailUri(canvas, values, n) : BLANK,
                    off: isOff(state.off, layer, head), x: left + head * (cell + gap), y: top + layer * (cell + gap)});
            }
        }
        const caption = `${modelInfo.name} · mode ${state.mode} · off: `
            + (state.off.map(([l, h]) => headName(l, h)).join(', ') || 'none');
        if (format === 'svg') {
            const escape = (t) => String(t).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
            const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" `
                + `font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="#fff"/>`];
            for (let head = 0; head < heads; head++) {
                parts.push(`<text x="${left + head * (cell + gap) + cell / 2}" y="14" text-anchor="middle">H${head}</text>`);
            }
            for (let layer = 0; layer < layers; layer++) {
                parts.push(`<text x="4" y="${top + layer * (cell + gap) + cell / 2 + 4}">L${layer}</text>`);
            }
            for (const p of pictures) {
                parts.push(`<image x="${p.x}" y="${p.y}" width="${cell}" height="${cell}" href="${p.uri}" `
                    + `style="image-rendering:pixelated"${p.off ? ' opacity="0.3"' : ''}/>`);
                if (p.off) {
                    parts.push(`<path d="M${p.x} ${p.y}L${p.x + cell} ${p.y + cell}M${p.x + cell} ${p.y}L${p.x} `
                        + `${p.y + cell}" stroke="${palette().down}" stroke-width="2"/>`);
                }
            }
            parts.push(`<text x="4" y="${height - 6}">${escape(caption)}</text></svg>`);
            download(`${name}.svg`, new Blob([parts.join('')], {type: 'image/svg+xml'}));
            return;
        }
        const out = document.createElement('canvas');
        out.width = width;
        out.height = height;
        const context = out.getContext('2d');
        context.fillStyle = '#fff';
        context.fillRect(0, 0, width, height);
        context.fillStyle = '#222';
        context.font = '11px sans-serif';
        for (let head = 0; head < heads; head++) context.fillText(`H${head}`, left + head * (cell + gap) + cell / 2 - 8, 14);
        for (let layer = 0; layer < layers; layer++) context.fillText(`L${layer}`, 4, top + layer * (cell + gap) + cell / 2 + 4);
        context.fillText(caption, 4, height - 6);
        context.imageSmoothingEnabled = false;
        let pending = pictures.length;
        for (const p of pictures) {
            const image = new Image();
            image.onload = () => {
                context.globalAlpha = p.off ? 0.3 : 1;
                context.drawImage(image, p.x, p.y, cell, cell);
                context.globalAlpha = 1;
                if (p.off) {
                    context.strokeStyle = palette().down;
                    context.lineWidth = 2;
                    context.beginPath();
                    context.moveTo(p.x, p.y);
                    context.lineTo(p.x + cell, p.y + cell);
                    context.moveTo(p.x + cell, p.y);
                    context.lineTo(p.x, p.y + cell);
                    context.stroke();
                }
                pending -= 1;
                if (pending === 0) out.toBlob((blob) => download(`${name}.png`, blob), 'image/png');
            };
            image.src = p.uri;
        }
    }
})();
