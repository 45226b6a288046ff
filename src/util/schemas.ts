/** JSON Schema fragments shared by every kind's API: names and labels, the same rules everywhere. */

export const labelsSchema = {
  type: 'object',
  additionalProperties: { type: 'string', maxLength: 300 },
  propertyNames: { pattern: '^[A-Za-z0-9][A-Za-z0-9_.\\-/]{0,99}$' },
  maxProperties: 100,
} as const;

export const nameSchema = { type: 'string', minLength: 1, maxLength: 63, pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$', description: 'Letters, digits, `_`, `.`, `-`; starts with a letter or digit; at most 63.' } as const;
