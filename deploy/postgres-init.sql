CREATE DATABASE custody_coordinator;
CREATE DATABASE custody_node1;
CREATE DATABASE custody_node2;
CREATE DATABASE custody_node3;
