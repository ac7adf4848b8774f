//! A flow's topology as inline SVG, drawn on the server from
//! [`crate::flow::graph`], top to bottom: one row per step from the start
//! (parallel branches side by side), tasks as
//! boxes (flowable tasks and subflows marked), parallel groups and
//! branches as framed clusters, edges labelled with their branch (CHOICE
//! values, ERROR, FINALLY), and the flow's triggers feeding the start.

use std::collections::HashMap;

use maud::{Markup, html};

use crate::flow::Flow;
use crate::flow::graph::FlowGraph;

const COL: i64 = 170;
const ROW: i64 = 72;
const BOX_W: i64 = 150;
const BOX_H: i64 = 40;
const MARGIN: i64 = 24;

/// Column of each node: the longest path from the start.
fn columns(graph: &FlowGraph) -> HashMap<&str, i64> {
    let mut rank: HashMap<&str, i64> = graph.nodes.iter().map(|n| (n.uid.as_str(), 0)).collect();
    // A DAG: at most one pass per node settles every rank.
    for _ in 0..graph.nodes.len() {
        let mut changed = false;
        for e in &graph.edges {
            let from = rank.get(e.source.as_str()).copied().unwrap_or(0);
            if let Some(to) = rank.get_mut(e.target.as_str())
                && *to < from + 1
            {
                *to = from + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    rank
}

/// The top-left corner of each node: rows by step, each row centred.
fn positions(graph: &FlowGraph, y0: i64) -> HashMap<&str, (i64, i64)> {
    let ranks = columns(graph);
    let mut per_rank: HashMap<i64, i64> = HashMap::new();
    for node in &graph.nodes {
        *per_rank
            .entry(ranks.get(node.uid.as_str()).copied().unwrap_or(0))
            .or_insert(0) += 1;
    }
    let widest = per_rank.values().copied().max().unwrap_or(1);
    let mut used: HashMap<i64, i64> = HashMap::new();
    let mut at = HashMap::new();
    for node in &graph.nodes {
        let rank = ranks.get(node.uid.as_str()).copied().unwrap_or(0);
        let count = per_rank.get(&rank).copied().unwrap_or(1);
        let index = used.entry(rank).or_insert(0);
        let x = MARGIN + (widest - count) * COL / 2 + *index * COL;
        at.insert(node.uid.as_str(), (x, y0 + rank * ROW));
        *index += 1;
    }
    at
}

fn label_of(node: &crate::flow::graph::GraphNode) -> (String, String, &'static str) {
    match &node.task {
        Some(task) => {
            let short = task
                .type_name
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_owned();
            let class =
                if task.type_name.ends_with("Subflow") || task.type_name.ends_with("ForEachItem") {
                    "node subflow"
                } else if node.branch_type.is_some() {
                    "node handler"
                } else {
                    "node task"
                };
            (task.id.clone(), short, class)
        }
        None if node.uid == "root.root" => ("start".into(), String::new(), "node terminal"),
        None if node.uid == "root.end" => ("end".into(), String::new(), "node terminal"),
        None => (String::new(), String::new(), "node join"),
    }
}

/// The SVG of `flow`'s graph (with its triggers), labelled for screen readers.
pub fn render(flow: &Flow, graph: &FlowGraph) -> Markup {
    let triggers = flow.triggers.len() as i64;
    let y0 = MARGIN + if triggers > 0 { ROW } else { 0 };
    let at = positions(graph, y0);
    let width = (at.values().map(|p| p.0).max().unwrap_or(0) + BOX_W + MARGIN)
        .max(2 * MARGIN + triggers * COL);
    let height = at.values().map(|p| p.1).max().unwrap_or(0) + BOX_H + MARGIN;
    let center = |uid: &str| at.get(uid).map(|(x, y)| (x + BOX_W / 2, y + BOX_H / 2));
    let start = center("root.root").unwrap_or((MARGIN, y0));
    html! {
        svg.graph role="img" aria-labelledby="graph-title" viewBox={"0 0 " (width) " " (height)} width=(width) height=(height) xmlns="http://www.w3.org/2000/svg" {
            title id="graph-title" { "Topology of " (flow.namespace) "." (flow.id) ": " (graph.nodes.len()) " nodes" }
            defs {
                marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" {}
                }
            }
            @for cluster in &graph.clusters {
                @let boxes: Vec<(i64, i64)> = cluster.nodes.iter().filter_map(|n| at.get(n.as_str()).copied()).collect();
                @if !boxes.is_empty() {
                    @let pad = 10 + 4 * (cluster.parents.len() as i64 % 3);
                    @let (x1, y1) = (boxes.iter().map(|b| b.0).min().unwrap_or(0) - pad, boxes.iter().map(|b| b.1).min().unwrap_or(0) - pad);
                    @let (x2, y2) = (boxes.iter().map(|b| b.0).max().unwrap_or(0) + BOX_W + pad, boxes.iter().map(|b| b.1).max().unwrap_or(0) + BOX_H + pad);
                    rect.cluster x=(x1) y=(y1) width=(x2 - x1) height=(y2 - y1) rx="8" {}
                }
            }
            @for edge in &graph.edges {
                @if let (Some(a), Some(b)) = (center(&edge.source), center(&edge.target)) {
                    @let (ay, by) = (a.1 + edge_gap(&edge.source), b.1 - edge_gap(&edge.target));
                    @let kind = edge.relation.relation_type.to_ascii_lowercase();
                    path class={"edge edge-" (kind)} d={"M " (a.0) " " (ay) " C " (a.0) " " ((ay + by) / 2) ", " (b.0) " " ((ay + by) / 2) ", " (b.0) " " (by)} marker-end="url(#arrow)" {}
                    @let label = edge.relation.value.clone().or_else(|| matches!(kind.as_str(), "error" | "finally").then(|| kind.clone()));
                    @if let Some(label) = label {
                        text.edge-label x=((a.0 + b.0) / 2 + 4) y=((ay + by) / 2) { (label) }
                    }
                }
            }
            @for (i, trigger) in flow.triggers.iter().enumerate() {
                @let x = MARGIN + i as i64 * COL;
                g class={"node trigger" @if trigger.disabled { " disabled" }} {
                    rect x=(x) y=(MARGIN) width=(BOX_W) height=(BOX_H) rx="20" {}
                    text x=(x + BOX_W / 2) y=(MARGIN + 17) text-anchor="middle" { (truncate(&trigger.id)) }
                    text.type x=(x + BOX_W / 2) y=(MARGIN + 32) text-anchor="middle" { (trigger.type_name.rsplit('.').next().unwrap_or_default()) }
                }
                path.edge.edge-trigger d={"M " (x + BOX_W / 2) " " (MARGIN + BOX_H) " L " (start.0) " " (start.1 - BOX_H / 2)} marker-end="url(#arrow)" {}
            }
            @for node in &graph.nodes {
                @if let Some((x, y)) = at.get(node.uid.as_str()).copied() {
                    @let (name, kind, class) = label_of(node);
                    @let flowable = node.task.as_ref().is_some_and(|t| graph.flowables.contains(&t.id));
                    g class={(class) @if flowable { " flowable" }} {
                        title { (node.uid) }
                        @if name.is_empty() {
                            circle cx=(x + BOX_W / 2) cy=(y + BOX_H / 2) r="6" {}
                        } @else {
                            rect x=(x) y=(y) width=(BOX_W) height=(BOX_H) rx="6" {}
                        }
                        text x=(x + BOX_W / 2) y=(y + if kind.is_empty() { 25 } else { 17 }) text-anchor="middle" { (truncate(&name)) }
                        @if !kind.is_empty() {
                            text.type x=(x + BOX_W / 2) y=(y + 32) text-anchor="middle" { (truncate(&kind)) }
                        }
                    }
                }
            }
        }
    }
}

/// How far from a node's centre its edges end: a box's half height, or
/// a join's small circle.
fn edge_gap(uid: &str) -> i64 {
    if uid.ends_with(".end") && uid != "root.end" {
        6
    } else {
        BOX_H / 2
    }
}

fn truncate(text: &str) -> String {
    if text.chars().count() > 22 {
        let mut short: String = text.chars().take(21).collect();
        short.push('…');
        short
    } else {
        text.to_owned()
    }
}
