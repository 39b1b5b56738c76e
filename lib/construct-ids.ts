/** Construct ids derived from kebab-case names (`on-intake` → `OnIntake`, `fanout` → `Fanout`). */
export function pascal(name: string): string {
  return name.replace(/(^|-)([a-z0-9])/g, (_m, _d, c: string) => c.toUpperCase());
}
