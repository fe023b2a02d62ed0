//! Behaviour tests of `Zk::apply` against ZooKeeper 3.8's rules.
