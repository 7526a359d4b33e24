// vmd's tables as declarations (sets, maps, chains, in the order nft.ts writes them), from which both
// the full replace script and the incremental changes between two plans (nft-delta.ts) are rendered.

/** One declaration inside a `table FAMILY vmd { … }`; rules and elements kept apart so two versions can be compared. */
export type NftItem =
  | { readonly kind: 'set' | 'map'; readonly name: string; readonly type: string; readonly flags: string | null; readonly elements: readonly string[] }
  | { readonly kind: 'chain'; readonly name: string; readonly hook: string | null; readonly rules: readonly string[] }
  | { readonly kind: 'include'; readonly name: string };

export type NftFamily = 'inet' | 'bridge' | 'arp';

/** vmd's tables in one namespace as the last script made them; a family that is absent has no table. */
export type NftModel = ReadonlyMap<NftFamily, readonly NftItem[]>;

const q = (s: string): string => `"${s}"`;

/** A set or map's elements line; an empty one has none (nft refuses `elements = { }`). */
export function elementsLine(items: readonly string[]): string {
  return `elements = { ${items.join(', ')} }`;
}

/** The lines of one declaration, without the table's indent, as nft -f reads them. */
export function itemLines(item: NftItem, withElements = true): string[] {
  switch (item.kind) {
    case 'set':
    case 'map':
      return [
        `${item.kind} ${item.name} {`, `\ttype ${item.type}`,
        ...(item.flags === null ? [] : [`\tflags ${item.flags}`]),
        ...(withElements && item.elements.length > 0 ? [`\t${elementsLine(item.elements)}`] : []),
        '}',
      ];
    case 'chain':
      return [`chain ${item.name} {`, ...(item.hook === null ? [] : [`\t${item.hook}`]), ...item.rules.map((r) => `\t${r}`), '}'];
    case 'include':
      return [`include ${q(item.name)}`];
  }
}

/** `table FAMILY vmd { … }` with each declaration indented and a blank line between declarations. */
export function tableLines(family: NftFamily, items: readonly NftItem[], withElements = true): string[] {
  const body: string[] = [];
  for (const [i, item] of items.entries()) {
    if (i > 0 && items[i - 1]!.kind !== 'include') body.push('');
    body.push(...itemLines(item, withElements).map((l) => `\t${l}`));
  }
  return [`table ${family} vmd {`, ...body, '}'];
}

/** A rule as it compares between two versions: the counter values a replace carried over left out. */
export function ruleKey(rule: string): string {
  // Compared for every rule of every chain at each change: most have no carried-over counter to strip.
  if (!rule.includes('counter packets')) return rule;
  return rule.replace(/\bcounter packets \d+ bytes \d+/g, 'counter');
}
