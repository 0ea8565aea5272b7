// Keeps the database branch beside the git branch: on a checkout, it does what
// `arbor git sync` does, by running it, unless the repository's hooks do it already.
//
// Why the hooks and the extension never both sync: git runs the post-checkout hook on every
// checkout, from the terminal and from the editor's git extension alike. So with Arbor's
// hook installed (`arbor git status` says "post-checkout installed") the extension runs
// nothing and only shows what the hook did; without it, the extension runs `arbor git sync`
// once per change of branch, however many signals (the git extension, the file watcher)
// report that change. One instance per repository; its steps run one after another.
import { gitStatus, gitSync } from './arbor';
import { CliSettings } from './arbor_cli';
import { headBranch } from './git';
import { hooksInstalled } from './model';

// What a change of HEAD calls for.
export type SyncAction =
  | 'none' // the same branch as before, or a detached HEAD: nothing to switch
  | 'hook' // another branch, and the hook switches it: wait for the hook, show its result
  | 'sync'; // another branch, no hook: run `arbor git sync`

export function decide(previous: string | undefined, now: string | undefined, hooks: boolean): SyncAction {
  if (now === undefined || now === previous) return 'none';
  return hooks ? 'hook' : 'sync';
}

export interface FollowEvent {
  action: SyncAction;
  gitBranch?: string;
  pending?: boolean; // the sync starts now; another event follows when it is done
  line?: string; // what `arbor git sync` said
  error?: Error; // why it failed: the CLI's sentence
}

export class Follower {
  private last: string | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  // `settings` is read at each step, so a changed token or URL applies at once.
  constructor(
    private readonly repo: string,
    private readonly settings: () => Promise<CliSettings>,
    private readonly onEvent: (e: FollowEvent) => void,
  ) {}

  // Remembers the branch checked out now, so that only later changes count.
  async start(): Promise<void> {
    this.last = await headBranch(this.repo);
  }

  // Something reported that HEAD may have moved. Resolves when this report is handled;
  // reports are handled in order, each against the branch the previous one saw.
  headMoved(): Promise<FollowEvent> {
    const step = this.queue.then(() => this.step());
    this.queue = step.catch(() => undefined);
    return step;
  }

  private async step(): Promise<FollowEvent> {
    const now = await headBranch(this.repo);
    if (decide(this.last, now, false) === 'none') return this.emit({ action: 'none', gitBranch: now });
    const previous = this.last;
    this.last = now;
    const s = await this.settings();
    let hooks: boolean;
    try {
      hooks = hooksInstalled((await gitStatus(s, this.repo)).status);
    } catch (error) {
      // Not set up (no .arbor.toml): there is nothing to switch.
      return this.emit({ action: 'none', gitBranch: now, error: error as Error });
    }
    const action = decide(previous, now, hooks);
    if (action !== 'sync') return this.emit({ action, gitBranch: now });
    this.emit({ action, gitBranch: now, pending: true });
    try {
      return this.emit({ action, gitBranch: now, line: await gitSync(s, this.repo) });
    } catch (error) {
      return this.emit({ action, gitBranch: now, error: error as Error });
    }
  }

  private emit(e: FollowEvent): FollowEvent {
    this.onEvent(e);
    return e;
  }
}
