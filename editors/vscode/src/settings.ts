// The extension's settings, and the token, which is never a setting: it lives in the
// editor's SecretStorage (the OS keyring in VS Code, the browser's storage in code-server)
// and reaches the CLI only through ARBOR_TOKEN in the child's environment.
import * as vscode from 'vscode';
import { CliSettings } from './arbor_cli';

const kTokenKey = 'arbor.token';

export class Settings {
  constructor(private readonly secrets: vscode.SecretStorage) {}

  private get config(): vscode.WorkspaceConfiguration {
    return vscode.workspace.getConfiguration('arbor');
  }

  async cli(): Promise<CliSettings> {
    return {
      path: this.config.get<string>('path') || 'arbor',
      api: this.config.get<string>('apiUrl') || undefined,
      token: (await this.secrets.get(kTokenKey)) || undefined,
      project: this.config.get<string>('project') || undefined,
    };
  }

  get branchTtl(): string {
    return this.config.get<string>('branchTtl') || '7d';
  }
  get migrationFiles(): string {
    return this.config.get<string>('migrationFiles') || '**/migrations/**/*.sql';
  }
  get diffOnSave(): boolean {
    return this.config.get<boolean>('diffOnSave') ?? true;
  }
  get migrateCommand(): string[] {
    return this.config.get<string[]>('migrateCommand') ?? ['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', '${file}'];
  }
  get migrateTarget(): string {
    return this.config.get<string>('migrateTarget') ?? '';
  }
  get refreshMs(): number {
    return Math.max(2, this.config.get<number>('refreshSeconds') ?? 15) * 1000;
  }

  setToken(token: string): Thenable<void> {
    return this.secrets.store(kTokenKey, token);
  }
  clearToken(): Thenable<void> {
    return this.secrets.delete(kTokenKey);
  }
}
