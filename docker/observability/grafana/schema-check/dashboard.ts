// The shape of a voicebot dashboard, from Grafana's own published schema types
// (@grafana/schema: TypeScript generated from the CUE kinds Grafana validates dashboards
// with). tests/deploy/test_observability.py writes each dashboard as object literals that
// must `satisfies` these types and runs `tsc --strict` over them: an unknown key, a missing
// required option, a wrong type or an unknown enum value anywhere is a compile error.
import type * as dash from "@grafana/schema/dist/esm/raw/dashboard/x/Dashboard_types.gen";
import type * as stat from "@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen";
import type * as timeseries from "@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen";

// JSON holds an enum's values, not TypeScript's enum members: Json<T> is T with every
// string enum replaced by the union of its values (numeric enums already take numbers).
export type Json<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<Json<U>>
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;

// A panel of plugin `Type` whose options and custom field config are that plugin's own.
type PanelOf<Type extends string, Options, Custom> = Json<
  Omit<dash.Panel, "type" | "options" | "fieldConfig"> & {
    type: Type;
    options: Options;
    fieldConfig: {
      defaults: Omit<dash.FieldConfig, "custom"> & { custom?: Custom };
      overrides: dash.FieldConfigSource["overrides"];
    };
  }
>;

export type TimeSeriesPanel = PanelOf<"timeseries", timeseries.Options, timeseries.FieldConfig>;
export type StatPanel = PanelOf<"stat", stat.Options, Record<string, never>>;
export type RowPanel = Json<dash.RowPanel>;

// The dashboard itself; its panels are checked one by one with the types above.
export type DashboardShell = Json<Omit<dash.Dashboard, "panels">> & { panels: [] };
