// Renders the markdown of `arbor diff --format markdown` (src/datadiff/schema_diff.cc):
// headings, paragraphs, tables, fenced code, <details><summary> and <br>, with **bold** and
// `code` inline. Everything becomes Preact elements and text, never HTML: a name in a
// migration cannot add markup to the page, whatever it holds. Anything else is shown as text.
import type { ComponentChildren, VNode } from 'preact';

const entities: Record<string, string> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  '#39': "'",
  apos: "'",
};
const decode = (s: string) => s.replace(/&(amp|lt|gt|quot|#39|apos);/g, (_, e) => entities[e]);

// `code`, **bold**, <br> and entities; the rest is text.
function inline(s: string): ComponentChildren[] {
  const out: ComponentChildren[] = [];
  const re = /(`+)([\s\S]*?[^`])\1(?!`)|\*\*(.+?)\*\*|<br\s*\/?>/g;
  let at = 0;
  for (let m; (m = re.exec(s)); at = re.lastIndex) {
    if (m.index > at) out.push(decode(s.slice(at, m.index)));
    if (m[1]) out.push(<code>{m[2].trim() || m[2]}</code>);
    else if (m[3] !== undefined) out.push(<strong>{inline(m[3])}</strong>);
    else out.push(<br />);
  }
  if (at < s.length) out.push(decode(s.slice(at)));
  return out;
}

// The cells of a table row "| a | `b|c` |": split at pipes outside code spans.
function cells(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let tick = false;
  for (const c of line.trim().replace(/^\||\|$/g, '')) {
    if (c === '`') tick = !tick;
    if (c === '|' && !tick) {
      out.push(cur.trim());
      cur = '';
    } else cur += c;
  }
  out.push(cur.trim());
  return out;
}

export function Markdown({ text }: { text: string }) {
  const lines = text.split('\n');
  // Blocks go into the innermost open <details>, or the top.
  const top: VNode[] = [];
  const stack: { summary: string; body: VNode[] }[] = [];
  const add = (v: VNode) => (stack.length ? stack[stack.length - 1].body : top).push(v);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = /^(`{3,})(\w*)\s*$/.exec(line);
    const details = /^<details><summary>(.*)<\/summary>\s*$/.exec(line);
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (fence) {
      const body: string[] = [];
      for (
        i++;
        i < lines.length && !(lines[i].startsWith(fence[1]) && /^`+\s*$/.test(lines[i]));
        i++
      )
        body.push(lines[i]);
      const diff = fence[2] === 'diff';
      add(
        <pre class={diff ? 'code diff' : 'code'}>
          {body.map((l) => (
            <span class={diff && l[0] === '+' ? 'add' : diff && l[0] === '-' ? 'del' : ''}>
              {l + '\n'}
            </span>
          ))}
        </pre>,
      );
    } else if (details) {
      stack.push({ summary: decode(details[1]), body: [] });
    } else if (/^<\/details>\s*$/.test(line) && stack.length) {
      const d = stack.pop()!;
      add(
        <details>
          <summary>{d.summary}</summary>
          {d.body}
        </details>,
      );
    } else if (heading) {
      const H = `h${Math.min(6, heading[1].length + 1)}` as 'h3';
      add(<H>{inline(heading[2])}</H>);
    } else if (line.startsWith('|') && /^\|[\s|:-]+\|?\s*$/.test(lines[i + 1] ?? '')) {
      const head = cells(line);
      const rows: string[][] = [];
      for (i += 2; i < lines.length && lines[i].startsWith('|'); i++) rows.push(cells(lines[i]));
      i--;
      add(
        <table>
          <thead>
            <tr>
              {head.map((c) => (
                <th>{inline(c)}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr>
                {r.map((c) => (
                  <td>{inline(c)}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>,
      );
    } else if (line.trim()) {
      add(<p>{inline(line)}</p>);
    }
  }
  // A <details> never closed still shows what it holds.
  while (stack.length) {
    const d = stack.pop()!;
    add(
      <details open>
        <summary>{d.summary}</summary>
        {d.body}
      </details>,
    );
  }
  return <div class="markdown">{top}</div>;
}
