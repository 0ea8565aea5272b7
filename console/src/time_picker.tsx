// Picks a moment in a history window: a slider over the window, and the exact time (to the
// millisecond, in the user's time zone) in a date-time field beside it.
import { durationMs, type Branch, type Project } from './api';
import { local } from './util';

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

// The value of an <input type="datetime-local">, which is in the user's time zone.
export function toLocalInput(ms: number): string {
  const d = new Date(ms);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}` +
    `T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
  );
}

// The states of `branch` one may still reach: the project's history window back from now,
// but not before the branch was made. The API decides; this only bounds the picker.
export function historyWindow(
  project: Project,
  branch: Branch | undefined,
  now = Date.now(),
): [number, number] {
  const start = now - durationMs(project.spec.history_retention_duration);
  const made = branch ? Date.parse(branch.create_time) : start;
  return [Math.min(now, Math.max(start, made)), now];
}

export function TimePicker(props: {
  min: number;
  max: number;
  value: number;
  onChange: (ms: number) => void;
}) {
  const { min, max, value } = props;
  return (
    <div class="time-picker">
      <input
        type="range"
        aria-label="Point in time"
        min={min}
        max={max}
        step={1000}
        value={value}
        onInput={(e) => props.onChange(Number(e.currentTarget.value))}
      />
      <div class="time-row">
        <input
          type="datetime-local"
          aria-label="Exact time"
          step="0.001"
          min={toLocalInput(min)}
          max={toLocalInput(max)}
          value={toLocalInput(value)}
          onChange={(e) => {
            const ms = Date.parse(e.currentTarget.value); // a form without an offset is local
            if (!Number.isNaN(ms)) props.onChange(ms);
          }}
        />
        <span class="hint">
          {new Date(value).toISOString()} · window {local(min)} – {local(max)}
        </span>
      </div>
    </div>
  );
}
