// Package qos owns the detector QoS comparison of the report: the
// detector simulator (detector/sim, the code behind `pulse sim`) run at
// every detector's documented default over its seeded scenarios, as a
// table of false suspicions and detection times for pulse's Adaptive
// detector against PhiNormal (Akka's defaults), PhiExponential
// (Cassandra's), a fixed 3 s timeout and the seed's fix.
package qos
