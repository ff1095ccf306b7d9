//! FXSAVE/FXRSTOR and the XSAVE legacy region: (to be written)
