/* headscope dashboard: the browser-side callbacks.
 *
 * Everything here is pure UI work that must not wait for the server: turning a click into the next
 * URL state, drawing thumbnails and heatmaps from attention already in the page, showing busy
 * states. The URL serialiser mirrors app/urlstate.py exactly (the two must produce the same string).
 * Values shown to the user go through React (text, never HTML) or are escaped for Plotly's labels.
 */
(function () {
    'use strict';

    const dc = () => window.dash_clientside;
    const NO = () => window.dash_clientside.no_update;

    // ---- URL state (mirror of app/urlstate.py) --------------------------------------------------
    function encodeValue(value) {
        return encodeURIComponent(value).replace(/'/g, '%27').replace(/%2C/gi, ',');
    }
    function headName(layer, head) {
        return `L${layer}H${head}`;
    }
    function sortedHeads(off) {
        const seen = new Set();
        const heads = [];
        for (const [layer, head] of off || []) {
            const name = headName(layer, head);
            if (!seen.has(name)) {
                seen.add(name);
                heads.push([layer, head]);
            }
        }
        return heads.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    }
    function toQuery(state) {
        const parts = [];
        if (state.ex !== null && state.ex !== undefined) {
            parts.push(`ex=${state.ex}`);
        } else {
            parts.push(`text=${encodeValue(state.text || '')}`);
            if (state.pair) parts.push(`pair=${encodeValue(state.pair)}`);
        }
        parts.push(`layer=${state.layer}`, `head=${state.head}`);
        const off = sortedHeads(state.off);
        if (off.length) parts.push('off=' + off.map(([l, h]) => headName(l, h)).join(','));
        parts.push(`mode=${state.mode}`);
        return '?' + parts.join('&');
    }
    /** The next state after a control: always a new object, marked as made in the page. */
    function changed(state, change) {
        const next = Object.assign({}, state, change, {origin: 'control'});
        next.off = sortedHeads(next.off);
        return next;
    }
    /** 'L3H7' -> [3, 7] (the grid's ids name heads the way the URL does). */
    function parseHead(name) {
        const match = /^L(\d+)H(\d+)$/.exec(name);
        return [Number(match[1]), Number(match[2])];
    }
    function isOff(state, layer, head) {
        return (state.off || []).some(([l, h]) => l === layer && h === head);
    }
    function inputKey(state) {
        return JSON.stringify(state.ex !== null && state.ex !== undefined
            ? {ex: state.ex} : {text: state.text, pair: state.pair || null});
    }
    function maskKey(state) {
        return state.mode + '|' + sortedHeads(state.off).map(([l, h]) => headName(l, h)).join(',');
    }
    /** The clicked pattern-matching id, or null for the calls Dash makes when such components appear. */
    function clickedId() {
        const ctx = dc().callback_context;
        const fired = (ctx.triggered || []).filter((t) => t.value);
        return fired.length ? ctx.triggered_id : null;
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
    const decoded = new WeakMap();
    function headValues(attention, layer, head) {
        if (!attention || !attention.heads) return null;
        let cache = decoded.get(attention.heads);
        if (!cache) {
            cache = new Map();
            decoded.set(attention.heads, cache);
        }
        const name = headName(layer, head);
        if (!cache.has(name)) {
            const encoded = attention.heads[name];
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
    const MAX_FLIPPED_SHOWN = 60;  // each is a component Dash revisits on every update; the export has all
    const PENDING_SCORE = 'Computing the score on all of dev… (a new mask takes a while on a CPU; the page '
        + 'stays usable meanwhile)';
    const SEQUENTIAL = [[0, '#ffffff'], [0.15, '#dce6f7'], [0.4, '#8fb0e6'], [0.7, '#3867c4'], [1, '#0c2c7a']];
    const DIVERGING = [[0, '#1f4fb4'], [0.25, '#8fb0e6'], [0.5, '#ffffff'], [0.75, '#ef9a8f'], [1, '#b3261e']];
    const BLANK = 'data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw==';
    function thumbnailUri(canvas, values, n) {
        canvas.width = n;
        canvas.height = n;
        const context = canvas.getContext('2d');
        const image = context.createImageData(n, n);
        const top = maxOf(values) || 1;
        for (let i = 0; i < n * n; i++) {
            const t = Math.sqrt(Math.max(values[i], 0) / top);
            image.data[4 * i] = Math.round(255 - t * (255 - 12));
            image.data[4 * i + 1] = Math.round(255 - t * (255 - 44));
            image.data[4 * i + 2] = Math.round(255 - t * (255 - 122));
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
                    xref: 'paper', yref: 'paper', font: {size: 13, color: '#555'}}] : [],
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
                type: 'heatmap', z: packed(values, `${n},${n}`), x: labels, y: labels, colorscale: SEQUENTIAL,
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
                type: 'heatmap', z: packed(difference, `${n},${n}`), x: labels, y: labels, colorscale: DIVERGING,
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
        const indices = Array.from({length: n}, (_, i) => i);
        const traces = xs.map((x, bin) => ({
            type: 'scatter', mode: 'lines', x: packed(Float32Array.from(x), String(x.length)),
            y: packed(Float32Array.from(ys[bin]), String(x.length)), hoverinfo: 'skip', showlegend: false,
            line: {color: `rgba(12, 44, 122, ${((bin + 1) / bins) ** 2 * 0.9 + 0.05})`, width: 1 + bin * 0.35},
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
                        font: {size: 11, color: '#555'}, xanchor: 'right'},
                    {text: 'to (key)', x: 1, y: 1, yref: 'paper', yanchor: 'bottom', showarrow: false,
                        font: {size: 11, color: '#555'}, xanchor: 'left'},
                ],
                paper_bgcolor: '#fff', plot_bgcolor: '#fff', font: {family: 'system-ui, sans-serif'},
            },
        };
    }
    function element(type, props, children) {
        const p = Object.assign({}, props || {});
        if (children !== undefined) p.children = children;
        return {type: type, namespace: 'dash_html_components', props: p};
    }
    function formatScore(value) {
        return typeof value === 'number' && isFinite(value) ? value.toFixed(3) : '—';
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
    function scoreFailure(error) {
        return `The score could not be computed: ${error}`;
    }
    function stateLabel(state) {
        const off = sortedHeads(state.off);
        return `${off.length ? off.map(([l, h]) => headName(l, h)).join('+') : 'none'}-${state.mode}`;
    }

    // ---- the callbacks ---------------------------------------------------------------------------
    window.dash_clientside = Object.assign({}, window.dash_clientside, {
        headscope: {
            /** url.search -> raw-search, unless the search is the one this page just wrote for its state. */
            routeSearch: function (search, modelInfo, state) {
                if (!modelInfo) return NO();
                const current = search || '';
                if (state && toQuery(state) === current) return NO();
                return {search: current, at: Date.now()};
            },
            /** view-state -> address bar: a new history entry for a change made here; a quiet
             * replacement when the state came from (normalising) the URL itself. */
            writeUrl: function (state, search, cache, latest) {
                if (!state) return [NO(), NO(), NO(), NO(), NO()];
                const query = toQuery(state);
                if (state.origin !== 'control' && window.location.search !== query) {
                    // Replace first: the Location component then finds the address already equal to its
                    // new `search` and pushes nothing, so Back does not return to the invalid link.
                    window.history.replaceState(window.history.state, '',
                        window.location.pathname + query + window.location.hash);
                }
                // #score changes in the same update as the address bar, so the two never disagree: the
                // score of this mask if the page has it, else a busy mark until renderScore fills it in
                // (Dash runs renderScore only once the pending evaluation has answered).
                const key = maskKey(state);
                const known = (cache || {})[key];
                let score = ['…', 'true', '…', PENDING_SCORE];
                if (known) score = [formatScore(known.score), 'false', NO(), NO()];
                else if (latest && latest.key === key && latest.error) {
                    score = ['—', 'false', '—', scoreFailure(latest.error)];
                }
                return [query === search ? NO() : query].concat(score);
            },
            shareUrl: function (state) {
                if (!state) return '';
                return window.location.origin + window.location.pathname + toQuery(state);
            },
            showProblems: function (problems) {
                const list = problems || [];
                if (!list.length) return [[], true];
                return [[element('Strong', {}, 'Not everything asked for could be shown:'),
                    element('Ul', {}, list.map((p) => element('Li', {}, p)))], false];
            },
            dismissProblems: function (clicks) {
                return clicks ? [] : NO();
            },
            /** view-state -> what to fetch: attention for the input and mask, the score for the mask. */
            deriveRequests: function (state, attentionRequest, evaluateRequest) {
                if (!state) return [NO(), NO(), NO()];
                const off = sortedHeads(state.off);
                const mode = off.length ? state.mode : 'zero';  // nothing disabled: every mode is the same
                const key = inputKey(state);
                const attention = {
                    key: JSON.stringify([key, off, mode]), input_key: key, ex: state.ex,
                    text: state.text, pair: state.pair || null, off: off, mode: mode,
                };
                const evaluate = {key: maskKey(state), off: off, mode: state.mode};
                const newAttention = !attentionRequest || attentionRequest.key !== attention.key;
                return [
                    newAttention ? attention : NO(),
                    evaluateRequest && evaluateRequest.key === evaluate.key ? NO() : evaluate,
                    newAttention ? 'true' : NO(),  // the grid shows it is waiting until drawThumbnails
                ];
            },

            // -- controls: each turns a click into the next state ---------------------------------
            toggleHead: function (_clicks, state) {
                const id = clickedId();
                if (!id || !state) return NO();
                const [layer, head] = parseHead(id.toggle);
                const off = isOff(state, layer, head)
                    ? state.off.filter(([l, h]) => !(l === layer && h === head))
                    : state.off.concat([[layer, head]]);
                return changed(state, {off: off});
            },
            focusHead: function (_clicks, state) {
                const id = clickedId();
                if (!id || !state) return NO();
                const [layer, head] = parseHead(id.focus);
                if (state.layer === layer && state.head === head) return NO();
                return changed(state, {layer: layer, head: head});
            },
            toggleLayer: function (_clicks, state, modelInfo) {
                const id = clickedId();
                if (!id || !state || !modelInfo) return NO();
                const layer = id['layer-toggle'];
                const heads = Array.from({length: modelInfo.num_heads}, (_, h) => h);
                const allOff = heads.every((h) => isOff(state, layer, h));
                const others = state.off.filter(([l]) => l !== layer);
                return changed(state, {off: allOff ? others : others.concat(heads.map((h) => [layer, h]))});
            },
            resetMask: function (clicks, state) {
                if (!clicks || !state || !state.off.length) return NO();
                return changed(state, {off: []});
            },
            pickMode: function (_clicks, state) {
                const id = clickedId();
                if (!id || !state || state.mode === id['mode-button']) return NO();
                return changed(state, {mode: id['mode-button']});
            },
            pickExample: function (value, state) {
                if (value === null || value === undefined || !state || state.ex === value) return NO();
                return changed(state, {ex: value, text: null, pair: null});
            },
            analyseText: function (clicks, text, pair, state) {
                if (!clicks || !state || !text || !text.trim()) return NO();
                const nextPair = pair && pair.trim() ? pair : null;
                if (state.ex === null && state.text === text && (state.pair || null) === nextPair) return NO();
                return changed(state, {ex: null, text: text, pair: nextPair});
            },
            openFlipped: function (_clicks, state) {
                const id = clickedId();
                if (!id || !state || state.ex === id.flipped) return NO();
                return changed(state, {ex: id.flipped, text: null, pair: null});
            },

            /** view-state -> the input controls, when the state came from the URL (a control already
             * shows what the user chose; writing back would fight their typing). */
            syncInputs: function (state, options) {
                if (!state) return [NO(), NO(), NO(), NO()];
                const optionsArrived = (dc().callback_context.triggered || []).some(
                    (t) => t.prop_id === 'example-picker.options');
                if (optionsArrived) {  // the picker drops a value it has no option for: set it again
                    return [state.ex !== null && state.ex !== undefined ? state.ex : null, NO(), NO(), NO()];
                }
                if (state.origin === 'control') return [NO(), NO(), NO(), NO()];
                if (state.ex !== null && state.ex !== undefined) return [state.ex, NO(), NO(), NO()];
                return [null, state.text || '', state.pair || '', true];
            },
            /** Opening a text the API refuses (e.g. over max_tokens) falls back to example 0, saying why. */
            recoverInput: function (attention, state, problems) {
                if (!attention || !attention.bad_input || !state || state.ex !== null) return [NO(), NO()];
                if (attention.input_key !== inputKey(state)) return [NO(), NO()];
                const next = Object.assign({}, state, {ex: 0, text: null, pair: null, origin: 'fallback'});
                const problem = `text: ${attention.error} Showing dev example 0 instead.`;
                const known = (problems || []).filter((p) => p !== problem);
                return [next, known.concat([problem])];
            },
            keepBaseline: function (attention) {
                if (!attention || attention.error || (attention.off && attention.off.length)) return [NO(), NO()];
                return [attention, attention.input_key];
            },

            // -- drawing ----------------------------------------------------------------------------
            /** evaluate-request (the mask and mode) -> every toggle, layer label and mode button. */
            styleMask: function (request, modelInfo) {
                const [ablated, pressed, titles, layers, modes, modesPressed] = dc().callback_context.outputs_list;
                if (!request || !modelInfo) {
                    return [ablated, pressed, titles, layers, modes, modesPressed].map((group) => group.map(() => NO()))
                        .concat([NO(), NO()]);
                }
                const off = new Set(request.off.map(([l, h]) => headName(l, h)));
                const states = ablated.map(({id}) => String(off.has(id.toggle)));
                const layerClass = layers.map(({id}) => {
                    const count = request.off.filter(([l]) => l === id['layer-toggle']).length;
                    return 'layer-toggle' + (count === modelInfo.num_heads ? ' all-off' : count ? ' some-off' : '');
                });
                const total = modelInfo.num_layers * modelInfo.num_heads;
                return [
                    states,
                    states,
                    titles.map(({id}) => (off.has(id.toggle) ? 'Enable ' : 'Disable ') + id.toggle),
                    layerClass,
                    modes.map(({id}) => 'mode-button' + (id['mode-button'] === request.mode ? ' active' : '')),
                    modesPressed.map(({id}) => String(id['mode-button'] === request.mode)),
                    off.size ? `${off.size} of ${total} heads off (${request.mode})` : `all ${total} heads on`,
                    off.size === 0,
                ];
            },
            /** view-state -> the focus ring's grid cell (one element moves; no cell is restyled). */
            styleFocus: function (state) {
                if (!state) return [NO(), NO()];
                return [{gridRow: `${2 * state.layer + 2} / span 2`, gridColumn: state.head + 2},
                    headName(state.layer, state.head)];
            },
            /** attention -> each head's picture, as the background of its focus button (keeping its place
             * in the grid, which is part of the same style). */
            drawThumbnails: function (attention, request) {
                const [buttons] = dc().callback_context.outputs_list;
                const busy = String(!attention || !request || attention.key !== request.key);
                const canvas = document.createElement('canvas');
                const n = attention && attention.tokens ? attention.tokens.length : 0;
                const styles = buttons.map(({id}) => {
                    const [layer, head] = parseHead(id.focus);
                    const values = attention && attention.heads ? headValues(attention, layer, head) : null;
                    const style = {gridRow: `${2 * layer + 2} / span 1`, gridColumn: head + 2};
                    if (values) style.backgroundImage = `url(${thumbnailUri(canvas, values, n)})`;
                    return style;
                });
                return [styles, busy];
            },
            drawFocus: function (state, attention, baseline) {
                if (!state) return [NO(), NO(), NO(), NO(), NO()];
                const title = `${headName(state.layer, state.head)} · layer ${state.layer}, head ${state.head}`
                    + (isOff(state, state.layer, state.head) ? ` · disabled (${state.mode})` : '');
                if (!attention || attention.error) {
                    const message = attention ? attention.error : 'Loading attention…';
                    return [emptyFigure(message, 430), emptyFigure('', 300), emptyFigure('', 420), title,
                        {height: '300px'}];
                }
                const n = attention.tokens.length;
                const values = headValues(attention, state.layer, state.head);
                if (!values) return [emptyFigure('No data for this head', 430), NO(), NO(), title, NO()];
                const heatmap = heatmapFigure(attention.tokens, values, n, 430);
                const lines = linesFigure(attention.tokens, values, n);
                let difference;
                const base = baseline && baseline.input_key === attention.input_key
                    ? headValues(baseline, state.layer, state.head) : null;
                if (base && base.length === values.length) {
                    difference = differenceFigure(attention.tokens, values, base, n, 420);
                } else {
                    difference = emptyFigure('Loading the baseline…', 420);
                }
                return [heatmap, lines, difference, title, {height: `${lines.layout.height}px`}];
            },
            renderInputSummary: function (state, examples, attention, baseline, request, modelInfo) {
                if (!state || !modelInfo) return NO();
                const parts = [];
                const hasExample = state.ex !== null && state.ex !== undefined;
                const example = hasExample && examples ? examples[state.ex] : null;
                if (hasExample) {
                    parts.push(element('Div', {className: 'input-title'}, [
                        element('B', {}, `Dev example #${state.ex}`),
                        example ? element('Span', {className: 'gold'}, ` · gold: ${example.label}`) : '',
                    ]));
                    if (example) {
                        parts.push(element('P', {className: 'input-text'}, example.text));
                        if (example.text_pair) parts.push(element('P', {className: 'input-text pair'}, example.text_pair));
                    }
                } else {
                    parts.push(element('Div', {className: 'input-title'}, element('B', {}, 'Your text')));
                    parts.push(element('P', {className: 'input-text'}, state.text || ''));
                    if (state.pair) parts.push(element('P', {className: 'input-text pair'}, state.pair));
                }
                if (attention && attention.error) {
                    parts.push(element('P', {className: 'error', role: 'alert'}, attention.error));
                    return parts;
                }
                const stale = !attention || !request || attention.key !== request.key;
                if (!attention || !attention.prediction) {
                    parts.push(element('P', {className: 'muted small'}, 'Running the model…'));
                    return parts;
                }
                const masked = attention.prediction;
                const base = baseline && baseline.input_key === attention.input_key ? baseline.prediction : null;
                const rows = modelInfo.labels.map((label, i) => element('Tr', {}, [
                    element('Td', {className: label === masked.label ? 'predicted' : ''}, label),
                    element('Td', {}, element('Div', {className: 'bar'}, element('Div', {className: 'fill masked',
                        style: {width: `${(masked.probs[i] * 100).toFixed(1)}%`}}))),
                    element('Td', {className: 'num'}, masked.probs[i].toFixed(3)),
                    element('Td', {className: 'num muted'}, base ? base.probs[i].toFixed(3) : '…'),
                ]));
                parts.push(element('Table', {className: 'probs' + (stale ? ' stale' : '')}, [
                    element('Thead', {}, element('Tr', {}, [element('Th', {}, 'label'), element('Th', {}, ''),
                        element('Th', {className: 'num'}, 'mask'), element('Th', {className: 'num'}, 'baseline')])),
                    element('Tbody', {}, rows),
                ]));
                const verdict = base ? (base.label === masked.label ? 'same prediction as the baseline'
                    : `prediction flipped: ${base.label} → ${masked.label}`) : '';
                parts.push(element('P', {className: 'verdict small' + (base && base.label !== masked.label
                    ? ' flipped' : '')}, [element('B', {}, `Prediction: ${masked.label}`),
                    verdict ? ` · ${verdict}` : '', stale ? ' · updating…' : '']));
                return parts;
            },
            /** Scores by mask, so returning to a mask needs no call; failures are not kept, so that
             * returning to that mask asks again. */
            collectScore: function (latest, cache) {
                if (!latest || !latest.key || latest.error) return NO();
                const next = Object.assign({}, cache || {});
                next[latest.key] = latest;
                return next;
            },
            renderScore: function (request, cache, latest) {
                const results = Object.values(cache || {}).filter((r) => !r.error);
                const anyBaseline = results.length ? results[results.length - 1].baseline : null;
                const baselineText = anyBaseline === null ? '…' : formatScore(anyBaseline);
                const baselineBusy = String(anyBaseline === null);
                const result = request && cache ? cache[request.key] : null;
                if (!result && request && latest && latest.key === request.key && latest.error) {
                    return ['—', 'false', baselineText, baselineBusy, '—', 'score-value', NO(),
                        scoreFailure(latest.error)];
                }
                if (!result) {
                    return ['…', 'true', baselineText, baselineBusy, '…', 'score-value', NO(), PENDING_SCORE];
                }
                const delta = result.delta;
                const deltaText = (delta > 0 ? '+' : delta < 0 ? '−' : '±') + Math.abs(delta).toFixed(3);
                const deltaClass = 'score-value ' + (delta > 1e-9 ? 'up' : delta < -1e-9 ? 'down' : '');
                const offCount = (result.off || []).length;
                const details = `${result.metric} on all ${result.n} dev examples · mode ${result.mode} · `
                    + `${offCount} head${offCount === 1 ? '' : 's'} off`;
                const status = `${result.flipped.length} prediction${result.flipped.length === 1 ? '' : 's'} `
                    + `flipped · ${result.cached ? 'from the result store' : `computed in ${(result.elapsed_ms / 1000).toFixed(1)} s`}`;
                return [formatScore(result.score), 'false', formatScore(result.baseline), 'false', deltaText,
                    deltaClass, details, status];
            },
            /** The score's significance (docs/api.md): interval, p-value and, after the p-value, what it means. */
            renderSignificance: function (request, cache) {
                const result = request && cache ? cache[request.key] : null;
                const sure = result && !result.error ? result.significance : null;
                if (!sure) return ['…', '…', ''];
                const fixed = (x) => (Math.abs(x) < 5e-4 ? 0 : x).toFixed(3);
                const interval = `[${fixed(sure.ci95[0])}, ${fixed(sure.ci95[1])}]`;
                const p = sure.p_value < 0.001 ? 'p < 0.001' : `p = ${sure.p_value.toFixed(3)}`;
                let words;
                if (sure.p_value >= 0.05) {
                    words = `: no detectable change (a difference this size often arises by chance on ${result.n} examples)`;
                } else {
                    words = `: a real ${result.delta < 0 ? 'drop' : 'gain'}, unlikely to be chance `
                        + `(${sure.right_to_wrong} examples went right → wrong, ${sure.wrong_to_right} wrong → right)`;
                }
                return [interval, p, words];
            },
            renderFlipped: function (request, cache, examples, state, modelInfo) {
                const result = request && cache ? cache[request.key] : null;
                if (!result || result.error) return [];
                if (!result.flipped.length) {
                    return [element('P', {className: 'muted small'}, state && state.off && state.off.length
                        ? 'No dev prediction changed.' : 'Disable heads to see which predictions change.')];
                }
                const binary = modelInfo && modelInfo.labels.length === 2;
                const shown = result.flipped.slice(0, MAX_FLIPPED_SHOWN);
                const items = shown.map((id) => {
                    const example = examples ? examples[id] : null;
                    // With two labels a flip is a fix exactly when the unablated model was wrong.
                    const verdict = !example ? '' : binary
                        ? (example.predicted === example.label ? 'now wrong' : 'now right')
                        : `was ${example.predicted}`;
                    return element('Button', {id: {flipped: id}, n_clicks: 0,
                        className: 'flipped-item' + (state && state.ex === id ? ' current' : ''),
                        title: (example ? `${example.text}\n\ngold ${example.label}; the unablated model said `
                            + `${example.predicted}. ` : '') + 'Click to inspect it with the same mask.'}, [
                        element('B', {}, `#${id}`),
                        verdict ? element('Span', {className: verdict === 'now right' ? 'fixed' : 'broken'},
                            ` ${verdict}`) : '',
                        ' · ' + (example ? example.text : ''),
                    ]);
                });
                if (result.flipped.length > shown.length) {
                    items.push(element('P', {className: 'muted small'},
                        `…and ${result.flipped.length - shown.length} more (export JSON for all).`));
                }
                return items;
            },

            // -- export ------------------------------------------------------------------------------
            exportFigure: function (_clicks, state, attention, modelInfo) {
                const id = clickedId();
                if (!id || !state) return NO();
                const name = `headscope-${id.export}-${headName(state.layer, state.head)}-${stateLabel(state)}`;
                if (id.export === 'grid') {
                    exportGrid(id.format, name, state, attention, modelInfo);
                    return Date.now();
                }
                const graph = document.querySelector(`#${id.export} .js-plotly-plot`);
                if (graph && window.Plotly) {
                    window.Plotly.downloadImage(graph, {format: id.format, filename: name,
                        width: graph.clientWidth || 600, height: graph.clientHeight || 430});
                }
                return Date.now();
            },
            exportNumbers: function (csvClicks, jsonClicks, headClicks, state, request, cache, attention,
                baseline, modelInfo, examples) {
                const ctx = dc().callback_context;
                const fired = (ctx.triggered || []).filter((t) => t.value);
                if (!fired.length || !state || !modelInfo) return NO();
                const which = fired[0].prop_id.split('.')[0];
                const label = stateLabel(state);
                if (which === 'export-head-csv') {
                    const values = attention ? headValues(attention, state.layer, state.head) : null;
                    if (!values) return NO();
                    const n = attention.tokens.length;
                    const quote = (t) => '"' + String(t).replace(/"/g, '""') + '"';
                    const lines = ['from\\to,' + attention.tokens.map(quote).join(',')];
                    for (let i = 0; i < n; i++) {
                        lines.push(quote(attention.tokens[i]) + ',' + Array.from(values.subarray(i * n, (i + 1) * n))
                            .map((v) => v.toFixed(5)).join(','));
                    }
                    return {content: lines.join('\n') + '\n', filename:
                        `headscope-${headName(state.layer, state.head)}-${label}.csv`, type: 'text/csv'};
                }
                const result = request && cache ? cache[request.key] : null;
                const example = state.ex !== null && examples ? examples[state.ex] : null;
                const numbers = {
                    model: modelInfo.name, fingerprint: modelInfo.fingerprint, task: modelInfo.task.name,
                    split: 'dev', metric: modelInfo.task.metric, mode: state.mode,
                    off: sortedHeads(state.off).map(([l, h]) => headName(l, h)),
                    score: result && !result.error ? result.score : null,
                    baseline: result && !result.error ? result.baseline : null,
                    delta: result && !result.error ? result.delta : null,
                    n: result && !result.error ? result.n : null,
                    flipped: result && !result.error ? result.flipped : null,
                    input: state.ex !== null ? {ex: state.ex, text: example ? example.text : null,
                        text_pair: example ? example.text_pair : null, gold: example ? example.label : null}
                        : {text: state.text, text_pair: state.pair || null},
                    focus: headName(state.layer, state.head),
                    labels: modelInfo.labels,
                    prediction: attention && attention.prediction ? attention.prediction : null,
                    baseline_prediction: baseline && attention && baseline.input_key === attention.input_key
                        ? baseline.prediction : null,
                    url: window.location.origin + window.location.pathname + toQuery(state),
                };
                if (which === 'export-json') {
                    return {content: JSON.stringify(numbers, null, 2) + '\n', filename: `headscope-${label}.json`,
                        type: 'application/json'};
                }
                const rows = [['quantity', 'value']];
                for (const key of ['model', 'fingerprint', 'task', 'split', 'metric', 'mode', 'score', 'baseline',
                    'delta', 'n', 'focus', 'url']) {
                    rows.push([key, numbers[key]]);
                }
                rows.push(['off', numbers.off.join(' ')]);
                rows.push(['flipped', (numbers.flipped || []).join(' ')]);
                rows.push(['input', state.ex !== null ? `ex=${state.ex}` : state.text]);
                if (numbers.prediction) {
                    rows.push(['prediction', numbers.prediction.label]);
                    modelInfo.labels.forEach((l, i) => rows.push([`prob ${l}`, numbers.prediction.probs[i]]));
                }
                if (numbers.baseline_prediction) {
                    rows.push(['baseline prediction', numbers.baseline_prediction.label]);
                    modelInfo.labels.forEach((l, i) => rows.push([`baseline prob ${l}`,
                        numbers.baseline_prediction.probs[i]]));
                }
                const cell = (v) => {
                    const text = v === null || v === undefined ? '' : String(v);
                    return /[",\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
                };
                return {content: rows.map((r) => r.map(cell).join(',')).join('\n') + '\n',
                    filename: `headscope-${label}.csv`, type: 'text/csv'};
            },
        },
    });

    /** The head grid as one picture: every head's attention, disabled heads crossed out. */
    function exportGrid(format, name, state, attention, modelInfo) {
        if (!attention || !attention.heads || !modelInfo) return;
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
                    off: isOff(state, layer, head), x: left + head * (cell + gap), y: top + layer * (cell + gap)});
            }
        }
        const caption = `${modelInfo.name} · mode ${state.mode} · off: `
            + (sortedHeads(state.off).map(([l, h]) => headName(l, h)).join(', ') || 'none');
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
                        + `${p.y + cell}" stroke="#c0392b" stroke-width="2"/>`);
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
                    context.strokeStyle = '#c0392b';
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
