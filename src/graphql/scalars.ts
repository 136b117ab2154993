import { GraphQLScalarType, Kind } from "graphql";

const DECIMAL_RE = /^-?\d{1,21}(\.\d{1,9})?$/;

/**
 * USD amounts as decimal strings ("0.000150000"). Parsed values stay strings: the domain
 * converts them to bigint nano-USD with the field name, so errors say which input was wrong.
 */
export const DecimalScalar = new GraphQLScalarType<string, string>({
  name: "Decimal",
  description: "A decimal number as a string, e.g. USD \"0.000150000\". Never a float.",
  serialize(value) {
    if (typeof value === "string" && DECIMAL_RE.test(value)) return value;
    if (typeof value === "bigint") return value.toString();
    throw new TypeError("Decimal must be serialized from a decimal string");
  },
  parseValue(value) {
    if (typeof value !== "string" || !DECIMAL_RE.test(value.trim())) {
      throw new TypeError("Decimal must be a string like \"12.50\" (at most 9 decimals)");
    }
    return value.trim();
  },
  parseLiteral(ast) {
    if (ast.kind !== Kind.STRING || !DECIMAL_RE.test(ast.value.trim())) {
      throw new TypeError("Decimal must be a string like \"12.50\" (at most 9 decimals)");
    }
    return ast.value.trim();
  },
});
