//! A flow's graph in Kestra's `FlowGraph` shape: one node per task
//! between a start (`root.root`) and an end (`root.end`), edges in
//! execution order (SEQUENTIAL; PARALLEL to a parallel task's children;
//! CHOICE to a condition's branches, valued with the branch; ERROR and
//! FINALLY to the handlers), and one cluster per flowable task holding
//! its children, between the task's node and its end node.

use schemars::JsonSchema;
use serde::Serialize;

use super::{Flow, Task, TaskKind};

const TASK_NODE: &str = "io.kestra.core.models.hierarchies.GraphTask";
const ROOT_NODE: &str = "io.kestra.core.models.hierarchies.GraphClusterRoot";
const END_NODE: &str = "io.kestra.core.models.hierarchies.GraphClusterEnd";
const CLUSTER: &str = "io.kestra.core.models.hierarchies.GraphCluster";

/// Kestra's `FlowGraph`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct FlowGraph {
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
    pub clusters: Vec<GraphCluster>,
    /// Ids of the flowable tasks.
    pub flowables: Vec<String>,
}

/// A node (Kestra's `AbstractGraph`), with its task when it is one.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GraphNode {
    pub uid: String,
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<GraphTask>,
    /// ERROR or FINALLY for nodes of handlers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch_type: Option<String>,
}

/// The task of a node.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct GraphTask {
    pub id: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

/// An edge (Kestra's `FlowGraphEdge`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct GraphEdge {
    pub source: String,
    pub target: String,
    pub relation: Relation,
}

/// Why an edge is there (Kestra's `Relation`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Relation {
    /// SEQUENTIAL, PARALLEL, CHOICE, ERROR or FINALLY.
    pub relation_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A flowable task's cluster (Kestra's `FlowGraphCluster`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct GraphCluster {
    pub cluster: GraphNode,
    pub nodes: Vec<String>,
    pub parents: Vec<String>,
    pub start: String,
    pub end: String,
}

/// How a branch hangs from where it starts.
#[derive(Debug, Clone)]
struct Link {
    kind: &'static str,
    value: Option<String>,
    branch: Option<&'static str>,
}

impl Link {
    fn of(kind: &'static str) -> Link {
        Link {
            kind,
            value: None,
            branch: None,
        }
    }
}

struct Builder {
    graph: FlowGraph,
    /// Cluster uids from the outermost to the current one.
    parents: Vec<String>,
}

impl Builder {
    fn node(&mut self, uid: &str, type_name: &str, task: Option<&Task>, link: &Link) -> String {
        self.graph.nodes.push(GraphNode {
            uid: uid.to_owned(),
            type_name: type_name.to_owned(),
            task: task.map(|t| GraphTask {
                id: t.id.clone(),
                type_name: t.type_name.clone(),
            }),
            branch_type: link.branch.map(str::to_owned),
        });
        if let Some(cluster) = self.parents.last().cloned()
            && let Some(c) = self
                .graph
                .clusters
                .iter_mut()
                .find(|c| c.cluster.uid == cluster)
        {
            c.nodes.push(uid.to_owned());
        }
        uid.to_owned()
    }

    fn edge(&mut self, source: &str, target: &str, link: &Link) {
        self.graph.edges.push(GraphEdge {
            source: source.to_owned(),
            target: target.to_owned(),
            relation: Relation {
                relation_type: link.kind.to_owned(),
                value: link.value.clone(),
            },
        });
    }

    /// Chains `tasks` between `from` and `to`, the first edge as `link`.
    fn branch(&mut self, tasks: &[&Task], prefix: &str, from: &str, to: &str, link: &Link) {
        let mut previous = from.to_owned();
        let mut how = link.clone();
        for task in tasks {
            let (start, end) = self.task(task, prefix, &how);
            self.edge(&previous, &start, &how);
            previous = end;
            how = Link {
                kind: "SEQUENTIAL",
                value: None,
                branch: link.branch,
            };
        }
        self.edge(&previous, to, &Link::of("SEQUENTIAL"));
    }

    /// Adds a task (and, when flowable, its cluster); its entry and exit uids.
    fn task(&mut self, task: &Task, prefix: &str, link: &Link) -> (String, String) {
        let uid = format!("{prefix}{}", task.id);
        let flowable =
            task.kind.is_flowable() || !task.errors.is_empty() || !task.finally.is_empty();
        if !flowable {
            let uid = self.node(&uid, TASK_NODE, Some(task), link);
            return (uid.clone(), uid);
        }
        let cluster_uid = format!("cluster_{uid}");
        let end = format!("{uid}.end");
        self.graph.flowables.push(task.id.clone());
        self.graph.clusters.push(GraphCluster {
            cluster: GraphNode {
                uid: cluster_uid.clone(),
                type_name: CLUSTER.to_owned(),
                task: None,
                branch_type: None,
            },
            nodes: Vec::new(),
            parents: self.parents.clone(),
            start: uid.clone(),
            end: end.clone(),
        });
        self.parents.push(cluster_uid);
        self.node(&uid, TASK_NODE, Some(task), link);
        self.node(&end, END_NODE, None, link);
        let inner = format!("{uid}.");
        self.children(task, &inner, &uid, &end);
        self.handlers(&task.errors, &task.finally, &inner, &uid, &end);
        self.parents.pop();
        (uid, end)
    }

    fn children(&mut self, task: &Task, prefix: &str, uid: &str, end: &str) {
        match &task.kind {
            TaskKind::Parallel { tasks, .. } => {
                for child in tasks {
                    self.branch(&[child], prefix, uid, end, &Link::of("PARALLEL"));
                }
            }
            TaskKind::If {
                then, otherwise, ..
            } => {
                for (value, tasks) in [("then", then), ("else", otherwise)] {
                    if !tasks.is_empty() {
                        let link = Link {
                            kind: "CHOICE",
                            value: Some(value.to_owned()),
                            branch: None,
                        };
                        self.branch(&tasks.iter().collect::<Vec<_>>(), prefix, uid, end, &link);
                    }
                }
            }
            TaskKind::Switch {
                cases, defaults, ..
            } => {
                let defaults = ("defaults".to_owned(), defaults.clone());
                for (value, tasks) in cases.iter().chain(std::iter::once(&defaults)) {
                    if !tasks.is_empty() {
                        let link = Link {
                            kind: "CHOICE",
                            value: Some(value.clone()),
                            branch: None,
                        };
                        self.branch(&tasks.iter().collect::<Vec<_>>(), prefix, uid, end, &link);
                    }
                }
            }
            kind => {
                let children = kind.children();
                if !children.is_empty() {
                    self.branch(&children, prefix, uid, end, &Link::of("SEQUENTIAL"));
                }
            }
        }
    }

    fn handlers(&mut self, errors: &[Task], finally: &[Task], prefix: &str, from: &str, to: &str) {
        for (tasks, kind) in [(errors, "ERROR"), (finally, "FINALLY")] {
            if !tasks.is_empty() {
                let link = Link {
                    kind,
                    value: None,
                    branch: Some(kind),
                };
                self.branch(&tasks.iter().collect::<Vec<_>>(), prefix, from, to, &link);
            }
        }
    }
}

/// The graph of `flow`.
pub fn graph(flow: &Flow) -> FlowGraph {
    let mut builder = Builder {
        graph: FlowGraph::default(),
        parents: Vec::new(),
    };
    let plain = Link::of("SEQUENTIAL");
    builder.node("root.root", ROOT_NODE, None, &plain);
    builder.node("root.end", END_NODE, None, &plain);
    let tasks: Vec<&Task> = flow.tasks.iter().collect();
    builder.branch(&tasks, "", "root.root", "root.end", &plain);
    builder.handlers(&flow.errors, &flow.finally, "", "root.root", "root.end");
    builder.graph
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_are_chained_and_flowables_clustered() {
        let flow = crate::flow::parse(
            "id: g\nnamespace: n\ntasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Log\n    message: a\n  - id: par\n    type: io.kestra.plugin.core.flow.Parallel\n    tasks:\n      - {id: b, type: io.kestra.plugin.core.log.Log, message: b}\n      - {id: c, type: io.kestra.plugin.core.log.Log, message: c}\nerrors:\n  - {id: e, type: io.kestra.plugin.core.log.Log, message: e}\n",
        )
        .expect("parses");
        let g = graph(&flow);
        let uids: Vec<&str> = g.nodes.iter().map(|n| n.uid.as_str()).collect();
        assert_eq!(
            uids,
            [
                "root.root",
                "root.end",
                "a",
                "par",
                "par.end",
                "par.b",
                "par.c",
                "e"
            ]
        );
        let has = |s: &str, t: &str, kind: &str| {
            g.edges
                .iter()
                .any(|e| e.source == s && e.target == t && e.relation.relation_type == kind)
        };
        assert!(has("root.root", "a", "SEQUENTIAL"));
        assert!(has("a", "par", "SEQUENTIAL"));
        assert!(has("par", "par.b", "PARALLEL"));
        assert!(has("par.c", "par.end", "SEQUENTIAL"));
        assert!(has("par.end", "root.end", "SEQUENTIAL"));
        assert!(has("root.root", "e", "ERROR"));
        assert_eq!(g.clusters.len(), 1);
        assert_eq!(g.clusters[0].nodes, ["par", "par.end", "par.b", "par.c"]);
        assert_eq!(g.flowables, ["par"]);
    }
}
