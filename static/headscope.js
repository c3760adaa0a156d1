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

    // ---- what the maps show of the input: `zoom` and `lines`, token positions (app/urlstate.py) ----
    /** The most tokens the lines view draws at once (app/urlstate.py's LINES_MAX_TOKENS, data-lines-window). */
    function linesMax() {
        return Number(document.querySelector('[data-lines-window]').dataset.linesWindow);
    }
    /** `40-79` -> [40, 79], or null. */
    function readSpan(text) {
        const match = /^(\d+)-(\d+)$/.exec(text || '');
        return match ? [Number(match[1]), Number(match[2])] : null;
    }
    /** `zoom`'s text -> {rows, cols}: the query and the key tokens shown, [first, last] each; or null. */
    function readZoom(text) {
        const parts = (text || '').split(',');
        const rows = readSpan(parts[0]);
        const cols = parts.length === 2 ? readSpan(parts[1]) : rows;
        return rows && cols && parts.length <= 2 ? {rows: rows, cols: cols} : null;
    }
    /** The zoom over an input of n tokens: a range past its end cut at its last token (wholly past: every token). */
    function zoomOf(text, n) {
        const zoom = readZoom(text);
        const cut = ([first, last]) => (first > n - 1 ? [0, n - 1] : [first, Math.min(last, n - 1)]);
        return zoom && {rows: cut(zoom.rows), cols: cut(zoom.cols)};
    }
    /** app/urlstate.py's zoom_text: one range when queries and keys span the same tokens. */
    function writeZoom(zoom) {
        const rows = zoom.rows.join('-');
        const cols = zoom.cols.join('-');
        return rows === cols ? rows : `${rows},${cols}`;
    }
    /** A Plotly axis range (category positions, either order) -> the tokens at least half shown, [first, last]
     * within 0..n-1 (a range inside one cell: that token). */
    function tokenSpan(a, b, n) {
        const low = Math.min(a, b);
        const high = Math.max(a, b);
        let first = Math.ceil(low);
        let last = Math.floor(high);
        if (first > last) first = last = Math.round((low + high) / 2);
        const clamp = (i) => Math.max(0, Math.min(i, n - 1));
        return [clamp(first), clamp(last)];
    }
    /** The lines view's window [first, last] over n tokens: the link's `lines`, else the zoom's query tokens,
     * else the first tokens; at most linesMax() tokens, within the input. */
    function linesWindow(values, n) {
        const zoom = readZoom(values.zoom);
        const [start, end] = readSpan(values.lines) || (zoom ? zoom.rows : [0, linesMax() - 1]);
        const first = Math.max(0, Math.min(start, n - 1));
        return [first, Math.max(first, Math.min(end, first + linesMax() - 1, n - 1))];
    }
    /** The axes of a token heatmap that show the zoom's tokens: {xaxis, yaxis}, each {range, autorange}
     * (keys read top to bottom, so the y range is reversed); null ranges, every token. */
    function zoomAxes(zoom) {
        const axis = (span, reversed) => {
            if (!span) return {range: null, autorange: reversed ? 'reversed' : true};
            const range = [span[0] - 0.5, span[1] + 0.5];
            return {range: reversed ? range.reverse() : range, autorange: false};
        };
        return {xaxis: axis(zoom && zoom.cols, false), yaxis: axis(zoom && zoom.rows, true)};
    }
    /** A figure patch that shows the zoom's tokens (null: every token) on a token heatmap's axes. */
    function zoomPatch(zoom) {
        const patch = new (dc().Patch)();
        for (const [axis, {range, autorange}] of Object.entries(zoomAxes(zoom))) {
            if (range) patch.assign(['layout', axis, 'range'], range);
            else patch.delete(['layout', axis, 'range']);
            patch.assign(['layout', axis, 'autorange'], autorange);
        }
        return patch.build();
    }
    /** A token heatmap's figure shown at the zoom's tokens (the same axes as zoomPatch sets). */
    function zoomed(figure, zoom) {
        if (!zoom || !figure.layout.xaxis) return figure;
        for (const [axis, shown] of Object.entries(zoomAxes(zoom))) {
            figure.layout[axis] = Object.assign({}, figure.layout[axis], shown);
        }
        return figure;
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
            off: readHeads(values.off), mode: values.mode, measure: values.measure || 'weights'};
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
            if (values.measure !== 'rollout') change.head = String(head);  // rollout: one map per layer
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
            if (parsedAnswers.size >= 6) parsedAnswers.delete(parsedAnswers.keys().next().value);
            const answer = JSON.parse(text);
            answer.byName = new Map(answer.heads.map((h) => [headName(h.layer, h.head), h]));
            // rollout: one map per layer (docs/api.md, "Attention measures"), which stands for the layer's heads
            for (const entry of answer.layers || []) answer.byName.set(`L${entry.layer}`, entry);
            answer.decoded = new Map();
            parsedAnswers.set(text, answer);
        }
        return parsedAnswers.get(text);
    }
    /** The name an answer files a head's map under: the head's, or under rollout its layer's. */
    function mapName(answer, layer, head) {
        return answer.measure === 'rollout' ? `L${layer}` : headName(layer, head);
    }
    /** The maps an answer holds, as {layer, head}: every head's, or under rollout each layer's (as head 0). */
    function mapEntries(answer) {
        return answer.measure === 'rollout' ? answer.layers.map((e) => ({layer: e.layer, head: 0})) : answer.heads;
    }
    /** A head's [rows, cols]: its `shape` for a thumbnail, n x n for a full map. */
    function headShape(answer, layer, head) {
        const entry = answer && answer.byName.get(mapName(answer, layer, head));
        if (!entry) return null;
        return entry.shape || [answer.tokens.length, answer.tokens.length];
    }
    /** A head's map (its layer's under rollout), decoded once. */
    function headValues(answer, layer, head) {
        if (!answer) return null;
        const cache = answer.decoded;
        const name = mapName(answer, layer, head);
        if (!cache.has(name)) {
            const entry = answer.byName.get(name);
            if (!entry || !entry.data) return null;
            const bytes = atob(entry.data);
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
    /** A map ([rows, cols], row-major) as a PNG data URI, one pixel a cell, scaled to its largest value. */
    function thumbnailUri(canvas, values, shape) {
        const [rows, cols] = shape;
        canvas.width = cols;
        canvas.height = rows;
        const context = canvas.getContext('2d');
        const image = context.createImageData(cols, rows);
        const top = maxOf(values) || 1;
        const scale = palette().sequential;
        for (let i = 0; i < rows * cols; i++) {
            const [r, g, b] = colourAt(scale, Math.sqrt(Math.max(values[i], 0) / top));
            image.data[4 * i] = r;
            image.data[4 * i + 1] = g;
            image.data[4 * i + 2] = b;
            image.data[4 * i + 3] = 255;
        }
        context.putImageData(image, 0, 0);
        return canvas.toDataURL('image/png');
    }
    /** Every head's map in one picture: head h of layer l at cell (l, h), each cell rows x cols pixels. */
    function gridSpriteUri(answer, shape) {
        const entries = mapEntries(answer);  // rollout: each layer's map in its first head's cell
        if (!entries.length) return BLANK;
        const [rows, cols] = headShape(answer, entries[0].layer, entries[0].head);
        const canvas = document.createElement('canvas');
        canvas.width = cols * shape.num_heads;
        canvas.height = rows * shape.num_layers;
        const context = canvas.getContext('2d');
        const scale = palette().sequential;
        const ramp = Array.from({length: 256}, (_, k) => colourAt(scale, k / 255));
        for (const entry of entries) {
            const values = headValues(answer, entry.layer, entry.head);
            const image = context.createImageData(cols, rows);
            const top = maxOf(values) || 1;
            for (let i = 0; i < rows * cols; i++) {
                const [r, g, b] = ramp[Math.round(255 * Math.sqrt(Math.max(values[i], 0) / top))];
                image.data[4 * i] = r;
                image.data[4 * i + 1] = g;
                image.data[4 * i + 2] = b;
                image.data[4 * i + 3] = 255;
            }
            context.putImageData(image, entry.head * cols, entry.layer * rows);
        }
        return canvas.toDataURL('image/png');
    }
    /** A data URI as a blob: URL, the last few kept. The grid's cells take their picture from the CSS variable
     * `--thumbs`, substituted in each cell's style: a data URI of hundreds of kB there cost the browser seconds
     * of style recalculation at 384 heads (each cell has its own inline style, so none shares the work). */
    const blobUrls = [];
    function blobUrl(dataUri) {
        const [head, body] = dataUri.split(',', 2);
        const bytes = atob(body);
        const array = new Uint8Array(bytes.length);
        for (let i = 0; i < bytes.length; i++) array[i] = bytes.charCodeAt(i);
        blobUrls.push(URL.createObjectURL(new Blob([array], {type: head.slice(5).split(';')[0]})));
        while (blobUrls.length > 3) URL.revokeObjectURL(blobUrls.shift());
        return blobUrls[blobUrls.length - 1];
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
    /** Category axes over the tokens. Plotly picks the ticks (at most `nticks`, re-picked on every zoom), so
     * labels are thinned where they would overlap and all shown once zoomed in; the hover names every token. */
    function tokenAxes(tokens, height) {
        const size = tokens.length > 30 ? 10 : 11;
        const nticks = Math.max(4, Math.floor((height - 110) / (size + 4)));
        const common = {type: 'category', tickfont: {size: size}, showgrid: false, zeroline: false,
            tickmode: 'auto', nticks: nticks};
        return {
            x: Object.assign({tickangle: -60, title: {text: 'to token (key)', font: {size: 11}}}, common),
            y: Object.assign({autorange: 'reversed', title: {text: 'from token (query)', font: {size: 11}}}, common),
        };
    }
    /** What a measure's numbers are called in hover text and on colour bars (docs/api.md, "Attention measures"). */
    const MEASURE_WORDS = {weights: 'weight', norm: 'norm', rollout: 'rollout'};
    function heatmapFigure(tokens, values, n, height, measure) {
        const labels = tokenCategories(tokens);
        const axes = tokenAxes(tokens, height);
        const word = MEASURE_WORDS[measure] || 'weight';
        return {
            data: [{
                type: 'heatmap', z: packed(values, `${n},${n}`), x: labels, y: labels, colorscale: palette().sequential,
                zmin: 0, zmax: Math.max(maxOf(values), 1e-6),
                hovertemplate: `from <b>%{y}</b><br>to <b>%{x}</b><br>${word} %{z:.4f}<extra></extra>`,
                colorbar: Object.assign({thickness: 10, len: 0.9, tickfont: {size: 10}}, measure === 'norm'
                    || measure === 'rollout' ? {title: {side: 'right', font: {size: 10},
                        text: measure === 'norm' ? 'norm (this head\'s scale)' : word}} : {}),
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
        const axes = tokenAxes(tokens, height);
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
    /** Lines from each query token to each key token of the window [start, end) (positions as in the input). */
    function linesFigure(tokens, values, n, start, end, measure) {
        const bins = 8;
        const scale = measure === 'norm' ? 1 / (maxOf(values) || 1) : 1;  // norm rows do not sum to 1
        const xs = Array.from({length: bins}, () => []);
        const ys = Array.from({length: bins}, () => []);
        for (let i = start; i < end; i++) {
            for (let j = start; j < end; j++) {
                const weight = values[i * n + j] * scale;
                if (!(weight >= 0.02)) continue;
                const bin = Math.min(bins - 1, Math.floor(Math.sqrt(weight) * bins));
                xs[bin].push(0, 1, NaN);  // NaN breaks the line between two segments
                ys[bin].push(i, j, NaN);
            }
        }
        const labels = tokens.slice(start, end).map(escapeLabel);
        const dark = colourAt(palette().sequential, 1);
        const indices = Array.from({length: end - start}, (_, i) => start + i);
        const traces = xs.map((x, bin) => ({
            type: 'scatter', mode: 'lines', x: packed(Float32Array.from(x), String(x.length)),
            y: packed(Float32Array.from(ys[bin]), String(x.length)), hoverinfo: 'skip', showlegend: false,
            line: {color: `rgba(${dark.join(', ')}, ${((bin + 1) / bins) ** 2 * 0.9 + 0.05})`, width: 1 + bin * 0.35},
        }));
        const hover = `${measure === 'norm' || measure === 'rollout' ? measure : 'weights'} from `
            + '<b>%{text}</b> (%{y})<extra></extra>';
        traces.push({type: 'scatter', mode: 'text', x: indices.map(() => 0), y: indices, text: labels,
            textposition: 'middle left', hovertemplate: hover, showlegend: false,
            textfont: {size: 12}});
        traces.push({type: 'scatter', mode: 'text', x: indices.map(() => 1), y: indices, text: labels,
            textposition: 'middle right', hovertemplate: 'to <b>%{text}</b> (%{y})<extra></extra>',
            showlegend: false, textfont: {size: 12}});
        return {
            data: traces,
            layout: {
                height: Math.max(260, (end - start) * 17 + 40), margin: {l: 10, r: 10, t: 24, b: 10},
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

    // ---- the head grid's buttons (no Dash ids: see app/layout.py `_head_grid`) ---------------------
    /** A click on a head's picture or toggle -> `grid-click`, which `nextSearch` turns into the next URL. */
    document.addEventListener('click', (event) => {
        const button = event.target instanceof Element
            ? event.target.closest('#head-grid [data-focus], #head-grid [data-head]') : null;
        if (!button || !dc() || !dc().set_props) return;
        const click = button.dataset.focus ? {focus: button.dataset.focus} : {toggle: button.dataset.head};
        dc().set_props('grid-click', {data: Object.assign(click, {at: Date.now()})});
    });
    /** The disabled heads (names) -> each toggle's data-ablated, aria-pressed and title, where they change
     * (these attributes are set here only: the layout gives every toggle "false"). */
    function markToggles(off) {
        const grid = document.getElementById('head-grid');
        if (!grid) return;
        for (const toggle of grid.querySelectorAll('[data-head]')) {
            const state = String(off.has(toggle.dataset.head));
            if (toggle.getAttribute('data-ablated') === state) continue;
            toggle.setAttribute('data-ablated', state);
            toggle.setAttribute('aria-pressed', state);
            toggle.title = (state === 'true' ? 'Enable ' : 'Disable ') + toggle.dataset.head;
        }
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
                if (id === 'grid-click') {
                    next = nextValues(value, values, modelInfo);
                } else if (id === 'example-picker') {
                    next = String(value) === values.ex ? null
                        : Object.assign({}, values, {ex: String(value), text: null, pair: null});
                } else {
                    next = nextValues(id.param ? {param: id.param, value: value} : id, values, modelInfo);
                }
                if (!next) return [NO(), NO()];
                if (['ex', 'text', 'pair'].some((k) => (next[k] ?? null) !== values[k])) {
                    for (const p of urlParams()) if (p.scope === 'view') next[p.name] = null;  // token positions of the old input
                }
                return [{search: encodeQuery(next), how: 'push'}, clear];
            },
            /** The address bar -> the server's parser, unless the page itself wrote that search. The model's
             * shape is an Input only so that the first address is routed once the parser can read it. */
            routeSearch: function (search, _modelInfo, page) {
                const current = search || '';
                if (page && page.search === current) return NO();
                return {search: current, at: Date.now()};
            },
            /** page-search -> the address bar (a new entry for a click, a quiet replacement for a link the
             * server normalised) and the share box, in one update. */
            applySearch: function (page, previous) {
                if (!page) return [NO(), NO()];
                if (window.location.search !== page.search) {
                    const url = window.location.pathname + page.search + window.location.hash;
                    if (page.how === 'push') window.history.pushState(window.history.state, '', url);
                    else window.history.replaceState(window.history.state, '', url);
                }
                const share = window.location.origin + window.location.pathname + page.search;
                return [page.search === previous ? NO() : page.search, share];
            },
            /** The page's search -> the link to the Layers page for it: the layout's path (Python's), this query. */
            layersLink: function (page, href) {
                const next = (href || '').split('?')[0] + (page && page.search ? page.search : '');
                return next === href ? NO() : next;
            },
            /** The address bar -> what to fetch, each only when what it depends on changes: the grid's
             * thumbnails for the input and mask, the focused head's full map for the input, mask and focus,
             * the score for the mask (so moving the focus fetches one head, and neither the grid nor the score).
             * A new score request marks the score busy in the same update (whatever changed the URL: a click,
             * a link, Back). */
            deriveRequests: function (page, gridRequest, focusRequest, evaluateRequest) {
                if (!page) return [NO(), NO(), NO(), NO(), NO(), NO(), NO(), NO()];
                const values = readQuery(page.search);
                const grid = encodeQuery(scoped(values, ['input', 'mask']));
                const focus = encodeQuery(scoped(values, ['input', 'mask', 'focus']));
                const evaluate = encodeQuery(scoped(values, ['mask']));
                const newGrid = grid !== gridRequest;
                const newScore = evaluate !== evaluateRequest;
                // score-request null: a new mask is scored once its grid and focus are drawn (afterDrawing)
                return [newGrid ? grid : NO(), focus === focusRequest ? NO() : focus, newScore ? evaluate : NO(),
                    newGrid ? 'true' : NO(), newScore ? '…' : NO(), newScore ? 'true' : NO(),
                    newScore ? PENDING_SCORE : NO(), newScore ? null : NO()];
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
                const [layers, modes, modesPressed] = dc().callback_context.outputs_list;
                if (!request || !modelInfo) {
                    return [layers, modes, modesPressed].map((group) => group.map(() => NO())).concat([NO(), NO()]);
                }
                const view = viewOf(request);
                const off = new Set(view.off.map(([l, h]) => headName(l, h)));
                markToggles(off);
                const total = modelInfo.num_layers * modelInfo.num_heads;
                return [
                    layers.map(({id}) => {
                        const count = view.off.filter(([l]) => l === id['layer-toggle']).length;
                        return 'layer-toggle' + (count === modelInfo.num_heads ? ' all-off' : count ? ' some-off' : '');
                    }),
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
                const column = view.measure === 'rollout' ? 2 : view.head + 2;  // rollout: the layer's one map
                return [{gridRow: `${2 * view.layer + 2} / span 2`, gridColumn: column},
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
            /** The grid's answer (thumbnails) -> one picture of every head (layers as rows), the grid's
             * `--thumbs`; each focus button shows its own cell of it (its background position is fixed in
             * app/layout.py), so drawing 384 heads is one update, not one per head. */
            drawThumbnails: function (grid, request, style) {
                const current = Boolean(grid) && grid.request === request;
                const answer = current ? parsedAnswer(grid.masked) : null;
                // data-drawn: the request whose grid is on screen (an error shown counts), for afterDrawing
                if (!answer) return [NO(), String(!current), NO(), current ? request : NO()];
                const modelInfo = JSON.parse(document.querySelector('[data-grid-shape]').dataset.gridShape);
                // data-measure: under rollout only each layer's first picture shows (headscope.css)
                const sprite = blobUrl(gridSpriteUri(answer, modelInfo));
                return [Object.assign({}, style, {'--thumbs': `url(${sprite})`}), 'false',
                    answer.measure || 'weights', request];
            },
            /** The focused head's answer -> the heatmap, the difference view and the title naming what they
             * show (all from the same answer; while the next head is on its way the panel is busy). */
            drawFocus: function (focus, request, viewRequest) {
                if (!focus || focus.request !== request) {
                    if (focus) return [NO(), NO(), NO(), 'true', NO()];
                    return [emptyFigure('Loading attention…', 430), emptyFigure('', 420), NO(), 'true', NO()];
                }
                const view = viewOf(focus.request);
                let title = view.measure === 'rollout' ? `rollout up to layer ${view.layer} (Abnar & Zuidema)`
                    : `${headName(view.layer, view.head)} · layer ${view.layer}, head ${view.head}`
                        + (isOff(view.off, view.layer, view.head) ? ` · disabled (${view.mode})` : '');
                const answer = parsedAnswer(focus.masked);
                const values = answer ? headValues(answer, view.layer, view.head) : null;
                if (!values) {
                    return [emptyFigure(focus.error ? 'No attention for this input' : 'No data for this head', 430),
                        emptyFigure('', 420), title, 'false', request];
                }
                // norm: each head on its own scale, said in the title; a head disabled in zero or mean mode moves
                // nothing (the API marks it `disabled`, all 0)
                const silent = view.measure === 'norm' && Boolean(answer.byName.get(headName(view.layer, view.head))?.disabled);
                if (view.measure === 'norm') {
                    title += silent ? ' · norm: moves nothing (all 0)'
                        : ` · norm, this head's scale: max ${maxOf(values).toPrecision(3)}`;
                }
                const n = answer.tokens.length;
                const baseline = focus.baseline ? parsedAnswer(focus.baseline) : answer;
                const base = headValues(baseline, view.layer, view.head);
                const zoom = zoomOf(readQuery(viewRequest).zoom, n);  // the link's zoom (app/view_callbacks.py)
                const difference = base && base.length === values.length
                    ? zoomed(differenceFigure(answer.tokens, values, base, n, 420), zoom)
                    : emptyFigure('No baseline for this head', 420);
                const heatmap = silent ? emptyFigure(`${headName(view.layer, view.head)} is disabled (${view.mode}): it `
                    + 'moves nothing from token to token', 430)
                    : zoomed(heatmapFigure(answer.tokens, values, n, 430, view.measure), zoom);
                return [heatmap, difference, title, 'false', request];
            },
            /** What is on screen (the grid's and the focus panel's data-drawn) -> page-drawn, the grid request
             * whose grid and focused head are both drawn, and score-request, the mask to score once its
             * picture is drawn: batch work (the score on all of dev, the picker's page) starts only then, so it
             * never holds up the grid or the heatmap, neither on the server nor for the browser's CPU. */
            afterDrawing: function (gridDrawn, focusDrawn, evaluateRequest, pageDrawn, scoreRequest) {
                if (!gridDrawn || !focusDrawn) return [NO(), NO()];
                if (encodeQuery(scoped(readQuery(focusDrawn), ['input', 'mask'])) !== gridDrawn) return [NO(), NO()];
                const mask = encodeQuery(scoped(readQuery(gridDrawn), ['mask']));
                const score = mask === evaluateRequest && scoreRequest !== evaluateRequest ? evaluateRequest : NO();
                return [gridDrawn === pageDrawn ? NO() : gridDrawn, score];
            },
            /** The focused head's answer and the view (app/view_callbacks.py) -> the lines between the window's
             * tokens (linesWindow), the slider's range and position (the window's first token) and what it shows. */
            drawLines: function (focus, viewRequest) {
                const answer = focus ? parsedAnswer(focus.masked) : null;
                if (!answer) return [emptyFigure('', 300), {height: '300px'}, NO(), NO(), ''];
                const view = viewOf(focus.request);
                const values = headValues(answer, view.layer, view.head);
                if (!values) return [emptyFigure('', 300), {height: '300px'}, NO(), NO(), ''];
                const n = answer.tokens.length;
                const [first, last] = linesWindow(readQuery(viewRequest), n);
                const lines = linesFigure(answer.tokens, values, n, first, last + 1, view.measure);
                const label = first === 0 && last === n - 1 ? `all ${n} tokens` : `tokens ${first}–${last} of ${n}`;
                return [lines, {height: `${lines.layout.height}px`}, n - (last - first + 1), first, label];
            },
            /** The address bar -> the view parameters alone (zoom, lines): what the zoom and the lines window
             * follow, changed only when they change (so a click elsewhere redraws neither). */
            deriveView: function (page, previous) {
                if (!page) return NO();
                const request = encodeQuery(scoped(readQuery(page.search), ['view']));
                return request === previous ? NO() : request;
            },
            /** The heatmap's zoom (drag, double-click, pan) -> `zoom` in the URL, in whole tokens, replacing the
             * address (no history entry, nothing fetched); `lines` is cleared, so the lines view follows the zoom. */
            zoomSearch: function (relayout, page, focus) {
                const answer = focus ? parsedAnswer(focus.masked) : null;
                if (!relayout || !page || !answer) return NO();
                const n = answer.tokens.length;
                const values = readQuery(page.search);
                const zoom = zoomOf(values.zoom, n) || {rows: [0, n - 1], cols: [0, n - 1]};
                let changed = false;
                for (const [axis, key] of [['xaxis', 'cols'], ['yaxis', 'rows']]) {
                    const range = relayout[`${axis}.range`] || (relayout[`${axis}.range[0]`] === undefined ? null
                        : [relayout[`${axis}.range[0]`], relayout[`${axis}.range[1]`]]);
                    if (range) zoom[key] = tokenSpan(range[0], range[1], n);
                    else if (relayout[`${axis}.autorange`]) zoom[key] = [0, n - 1];
                    else continue;
                    changed = true;
                }
                if (!changed) return NO();
                const whole = [zoom.rows, zoom.cols].every(([a, b]) => a === 0 && b === n - 1);
                const search = encodeQuery(Object.assign({}, values, {zoom: whole ? null : writeZoom(zoom), lines: null}));
                return search === page.search ? NO() : {search: search, how: 'replace'};
            },
            /** The lines view's slider (the window's first token) -> `lines` in the URL, the window keeping its
             * size; nothing when it shows the URL's window already (as when drawLines moves it). */
            linesSearch: function (start, page, focus) {
                const answer = focus ? parsedAnswer(focus.masked) : null;
                if (start === null || start === undefined || !page || !answer) return NO();
                const n = answer.tokens.length;
                const values = readQuery(page.search);
                const [first, last] = linesWindow(values, n);
                const from = Math.max(0, Math.min(Number(start), n - (last - first + 1)));
                if (from === first) return NO();
                const search = encodeQuery(Object.assign({}, values, {lines: `${from}-${from + last - first}`}));
                return {search: search, how: 'replace'};
            },
            /** The view's zoom -> the heatmap and the difference view shown there (a patch of their axes). */
            applyZoom: function (viewRequest, focus) {
                const answer = focus ? parsedAnswer(focus.masked) : null;
                if (!answer) return [NO(), NO()];
                const zoom = zoomOf(readQuery(viewRequest).zoom, answer.tokens.length);
                return [zoomPatch(zoom), zoomPatch(zoom)];
            },
            /** A figure's PNG/SVG button -> the download (drawn in the browser, from what is on screen). */
            exportFigure: function (_clicks, page, grid, modelInfo) {
                const id = clickedId();
                if (!id || !page || !modelInfo) return NO();
                const view = viewOf(page.search);
                const label = `${view.off.length ? view.off.map(([l, h]) => headName(l, h)).join('+') : 'none'}`
                    + `-${view.mode}`;
                const name = `headscope-${id.export}-${headName(view.layer, view.head)}-${label}`;
                if (id.export === 'grid') {
                    exportGrid(id.format, name, view, grid ? parsedAnswer(grid.masked) : null, modelInfo);
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
        const cell = 64;
        const gap = 6;
        const left = 36;
        const top = 22;
        const layers = modelInfo.num_layers;
        const heads = attention.measure === 'rollout' ? 1 : modelInfo.num_heads;  // rollout: one map a layer
        const width = left + heads * (cell + gap);
        const height = top + layers * (cell + gap) + 22;
        const canvas = document.createElement('canvas');
        const pictures = [];
        for (let layer = 0; layer < layers; layer++) {
            for (let head = 0; head < heads; head++) {
                const values = headValues(attention, layer, head);
                pictures.push({layer, head, uri: values ? thumbnailUri(canvas, values, headShape(attention, layer, head)) : BLANK,
                    off: isOff(state.off, layer, head), x: left + head * (cell + gap), y: top + layer * (cell + gap)});
            }
        }
        const caption = `${modelInfo.name} · ${state.measure} · mode ${state.mode} · off: `
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
